// Command apiguard makes every path apiguard protects tryable from a shell:
// it mints the tokens, DPoP proofs and signed requests a mobile app would
// send, and checks what an identity provider or a device hands over.
//
// Usage:
//
//	apiguard <command> [flags]
//
//	token keygen   make a token signing key (ES256, EdDSA or RS256) and its public JWKS
//	token mint     mint an RFC 9068 access token (typ at+jwt), optionally DPoP-bound
//	token serve    serve a JWKS on loopback for a local API
//	dpop           make an RFC 9449 DPoP proof for a method and URL
//	sign           RFC 9421-sign a request as a device; print it as curl or send it
//	jwks check     fetch a JWKS and say which keys auth would accept
//	discover       fetch an issuer's discovery document, then check its JWKS
//	attest verify  verify an App Attest attestation or assertion and print each check
//
// "apiguard <command> -h" prints a command's flags. Results go to stdout,
// errors to stderr. Exit codes: 0 done (for a check: verified), 1 failed
// or refused, 2 usage error.
//
// # A DPoP-bound call
//
//	apiguard token keygen -out issuer.pem -jwks jwks.json
//	apiguard token serve -jwks jwks.json &        # prints the JWKSURL for auth.Issuer
//	apiguard token keygen -out dpop.pem >/dev/null
//	TOKEN=$(apiguard token mint -key issuer.pem -iss https://login.example.com/ \
//	    -sub alice -aud https://api.example.com -scope orders:write -dpop-key dpop.pem)
//	export TOKEN
//	printf 'Authorization: DPoP %s\n' "$TOKEN" | curl -H @- \
//	    -H "DPoP: $(apiguard dpop -key dpop.pem -method POST -url http://127.0.0.1:8080/v1/orders -token-env TOKEN)" \
//	    -X POST http://127.0.0.1:8080/v1/orders
//
// # A signed request
//
//	apiguard sign -keyid device-42 -master-file master.b64 -salt shop-api \
//	    -url http://127.0.0.1:8080/v1/pay -data '{"amount":1}' -send
//
// # Secrets
//
// Device secrets, master secrets and private keys are read from files or
// from environment variables named by flags (-secret-env NAME), never
// from the command line, and are never printed, not even in errors. A
// private key that token keygen makes is written with mode 0600 to a file
// that did not exist.
//
// Access tokens are credentials too: give them with dpop -token-file or
// -token-env, and an Authorization header with sign -auth-file or
// -auth-env (and -send). The older dpop -token and sign -H
// "Authorization: ..." still work, but put the token on the command line,
// where any local user sees it with ps. (printf is a shell builtin, so
// the curl line above keeps the token out of every command line.)
package main
