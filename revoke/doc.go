// Package revoke refuses revoked access tokens on every instance, within
// a second of the revocation, at the cost of a map look-up per request.
//
//	list, err := revoke.New(revoke.Config{Store: redisstore.NewRevocationStore(rdb, opts, 0)})
//	v, err := auth.New(auth.Config{..., Revocations: list})
//	rcv, err := revoke.NewReceiver(revoke.ReceiverConfig{List: list, Issuer: ..., Audience: ..., JWKSURL: ...})
//	mux.Handle("POST /ssf/events", rcv)                         // RFC 8935 push
//	err = list.Revoke(ctx, revoke.Revocation{Issuer: iss, Subject: sub}) // the application's own
//
// A [List] holds revocations by subject, session (sid), token (jti) or
// client (client_id) of an issuer, each until every token it can refuse
// has expired (Config.MaxTokenLifetime, which must match auth's). auth
// asks it about every token, verified-token cache hits included
// (auth.Config.Revocations). A [Receiver] turns OpenID Shared Signals
// events (CAEP session-revoked and credential-change, RISC
// account-disabled and account-purged), delivered as Security Event
// Tokens by push (RFC 8935) or poll (RFC 8936), into revocations.
//
// With a [Store] (redisstore.RevocationStore), a revocation made on one
// instance is published to all and kept durably; an instance reads the
// durable set when its subscription starts or restarts, so a restart or
// a dropped connection misses nothing, and [List.Ready] fails until it
// has. While the store is down each instance keeps refusing what it
// holds, and Revoke holds the revocation locally and returns [ErrStore].
//
// The push endpoint sits outside auth's middleware: a transmitter is
// authenticated by the SET's signature (and ReceiverConfig.BearerToken).
//
// Memory is bounded by Config.MaxEntries; a full List refuses new
// revocations ([ErrFull]) rather than forget an unexpired one.
package revoke
