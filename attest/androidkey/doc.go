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
// One departure from x509 path checks, on evidence: a factory batch
// certificate that is not marked as a CA may sign the leaf, only in the
// shape leaf ← batch ← intermediate ← root, with every signature and
// validity check kept ([Verifier.Verify] says exactly when).
//
// Events: attestation_failed, android_key_status_error,
// android_key_status_refresh, android_key_revocation_unchecked. Every
// type here is safe for concurrent use by multiple goroutines.
package androidkey
