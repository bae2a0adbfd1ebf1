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
// Each interceptor builds a request from the call and serves it with the
// package's own http.Handler: POST to the full method name
// ("/pkg.Service/Method"), the incoming metadata as header fields
// (authorization, dpop, x-request-id, traceparent, x-forwarded-for, ...;
// pseudo-headers and -bin keys left out), the peer's address as
// RemoteAddr. A DPoP proof therefore has htm POST and htu auth's
// Config.DPoPURL joined with the full method name. The handler's context
// is the one the middleware passed on, so auth.ClaimsFrom and
// telemetry.IDFrom work in gRPC handlers, and the same security events are
// logged. Streams are decided once, when they open.
//
// # Rejections
//
// The middleware's HTTP answer becomes a status with a fixed message per
// code, never a detail of the check that failed: 400 InvalidArgument, 401
// Unauthenticated, 403 PermissionDenied, 429 ResourceExhausted and 503
// Unavailable (both with google.rpc.RetryInfo from Retry-After), other 5xx
// Internal. Its header fields (WWW-Authenticate, Retry-After, RateLimit,
// DPoP-Nonce) go in the trailing metadata. Header fields the middleware
// sets on an allowed call go in the header metadata.
//
// Middleware that watch the outcome (telemetry's duration metric) see the
// HTTP status standing for the handler's code: OK 200, InvalidArgument,
// FailedPrecondition and OutOfRange 400, Unauthenticated 401,
// PermissionDenied 403, NotFound 404, AlreadyExists and Aborted 409,
// ResourceExhausted 429, Canceled 499, Unimplemented 501, Unavailable 503,
// DeadlineExceeded 504, any other 500.
package grpcguard
