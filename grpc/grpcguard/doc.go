// Package grpcguard puts apiguard's auth, ratelimit and telemetry in front
// of a gRPC server, deciding each call exactly as the HTTP middleware
// decides a request, so that one policy holds on both transports.
//
//	tel := grpcguard.Telemetry(obs)
//	perIP := grpcguard.RateLimit(ipLimiter)     // ratelimit.KeyByIP(proxies...)
//	authn, err := grpcguard.NewAuth(verifier, grpcguard.AuthConfig{
//		Methods: map[string]auth.Requirement{"/shop.Orders/Cancel": {Scopes: []string{"orders:write"}}},
//	})
//	perUser := grpcguard.RateLimit(userLimiter) // keyed by auth.ClaimsFrom
//	srv := grpc.NewServer(
//		grpc.ChainUnaryInterceptor(tel.Unary, perIP.Unary, authn.Unary, perUser.Unary),
//		grpc.ChainStreamInterceptor(tel.Stream, perIP.Stream, authn.Stream, perUser.Stream))
//	// in a handler: claims, ok := auth.ClaimsFrom(ctx)
//
// # How a call is decided
//
// Each interceptor serves a request built from the call with its package's
// own http.Handler: POST to the full method name ("/pkg.Service/Method"),
// the incoming metadata as header fields (authorization, dpop,
// x-request-id, traceparent, x-forwarded-for; not pseudo-headers or -bin
// keys), the peer's address as RemoteAddr. So a DPoP proof has htm POST
// and htu auth's Config.DPoPURL plus the full method name. The handler gets
// the context the middleware passed on (auth.ClaimsFrom and
// telemetry.IDFrom work), and the same security events are logged. A
// stream is decided when it opens, and its token verified again every
// AuthConfig.StreamRecheck (10s): a token revoked (auth's
// Config.Revocations) or expired since ends the stream with
// Unauthenticated. Bound stream lifetimes too, with both MaxConnectionAge
// and MaxConnectionAgeGrace of keepalive.ServerParameters (the grace is
// infinite by default).
//
// # Rejections
//
// The HTTP answer becomes a status with a fixed message per code, never
// the check that failed: 400 InvalidArgument, 401 Unauthenticated, 403
// PermissionDenied, 429 ResourceExhausted and 503 Unavailable (both with
// google.rpc.RetryInfo), other 5xx Internal. Its header fields
// (WWW-Authenticate, Retry-After, RateLimit, DPoP-Nonce) are the trailing
// metadata; those set on an allowed call, the header metadata. Middleware
// that watch the outcome (telemetry's metric) see the HTTP status of the
// handler's code: OK 200; InvalidArgument, FailedPrecondition, OutOfRange
// 400; Unauthenticated 401; PermissionDenied 403; NotFound 404;
// AlreadyExists, Aborted 409; ResourceExhausted 429; Canceled 499;
// Unimplemented 501; Unavailable 503; DeadlineExceeded 504; others 500.
package grpcguard
