// Package androidkey verifies Android Key Attestation: the certificate
// chain KeyStore returns for a key generated with an attestation
// challenge, which proves the key lives in the device's TEE or StrongBox,
// for which app, and in what boot state.
//
//	ak, err := androidkey.New(androidkey.Config{
//		Packages: []string{"com.example.shop"}, SignatureDigests: [][]byte{signerSHA256},
//	})
//	key, err := ak.Verify(ctx, chain, challenge) // chain: DER, leaf first
//
// Verify checks the chain to Google's roots (embedded: [GoogleRoots]),
// RKP chains included, against the revocation status list (fetched and
// cached, fail closed after Config.StatusMaxStale), then the leaf's
// KeyDescription: the challenge (constant time, single use), the app's
// packages and signing certificates, hardware security level, a locked
// bootloader and Verified boot. Loosening is only by Insecure… fields.
// An old patch level is not refused: it is a [Key] signal (os_outdated)
// for the application's risk decision.
//
// Chains are checked link by link as Google's reference verifier does:
// names, signatures, CA flags, path lengths and revocation always; the
// validity of the certificates above the leaf, except that in a factory
// chain (provisioned in the factory, not by RKP) an expired one is
// accepted: those keys cannot be renewed, and revocation is the control.
// A factory batch certificate that is not marked as a CA may sign the
// leaf, in the shape leaf ← batch ← intermediate ← root only. The
// leaf's validity, set on the device, is not checked: the single-use
// challenge proves freshness. [Verifier.Verify] gives the evidence.
//
// # Device keys
//
// [Verifier.EnrolHandler] is an enrolment endpoint: the app generates an
// EC P-256 key with purpose SIGN in Keystore, attested with the server's
// challenge, and posts its key ID and chain; the attested key itself,
// once the chain verifies and the key is P-256, SIGN and generated in
// the device, goes to the application's store as an ecdsa-p256-sha256
// key that signing verifies requests with.
//
// Events: attestation_failed, android_key_status_error,
// android_key_status_refresh, android_key_revocation_unchecked. Every
// type here is safe for concurrent use by multiple goroutines.
package androidkey
