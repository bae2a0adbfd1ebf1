// An RFC 9421 client nobody here wrote (the http-message-signatures
// package) signs and verifies requests for apiguard's interop test.
//
//   node interop.mjs sign   < {method, url, headers, body, alg, key, keyid, nonce}
//   node interop.mjs verify < {method, url, headers, alg, key, keyid}
//
// alg is hmac-sha256 (the default), ecdsa-p256-sha256 or ed25519; the
// key is the base64 HMAC secret (secret_b64), or for the others the
// PKCS #8 private key to sign (private_pkcs8_b64) and the SPKI public key
// to verify (public_spki_b64), DER. sign prints the request's headers
// with Content-Digest, Signature-Input and Signature added; verify prints
// {"verified": true|false}.
import { httpbis, createSigner, createVerifier } from 'http-message-signatures';
import { createHash, createPrivateKey, createPublicKey } from 'node:crypto';

const chunks = [];
for await (const c of process.stdin) chunks.push(c);
const input = JSON.parse(Buffer.concat(chunks).toString());
const alg = input.alg || 'hmac-sha256';
const der = (b64) => Buffer.from(b64, 'base64');

if (process.argv[2] === 'sign') {
  const signKey = alg === 'hmac-sha256' ? der(input.secret_b64)
    : createPrivateKey({ key: der(input.private_pkcs8_b64), format: 'der', type: 'pkcs8' });
  const headers = { ...input.headers };
  const fields = ['@method', '@target-uri'];
  if (input.body) {
    headers['content-digest'] = 'sha-256=:' + createHash('sha256').update(input.body).digest('base64') + ':';
    fields.push('content-digest');
  }
  if (headers['authorization']) fields.push('authorization');
  const signed = await httpbis.signMessage({
    key: createSigner(signKey, alg, input.keyid),
    fields,
    params: ['created', 'keyid', 'nonce', 'alg'],
    paramValues: { nonce: input.nonce },
  }, { method: input.method, url: input.url, headers });
  console.log(JSON.stringify(signed.headers));
} else {
  let verified;
  try {
    const key = alg === 'hmac-sha256' ? der(input.secret_b64)
      : createPublicKey({ key: der(input.public_spki_b64), format: 'der', type: 'spki' });
    verified = await httpbis.verifyMessage({
      async keyLookup() {
        return { id: input.keyid, algs: [alg], verify: createVerifier(key, alg) };
      },
    }, { method: input.method, url: input.url, headers: input.headers });
  } catch (e) {
    verified = false;
  }
  console.log(JSON.stringify({ verified: verified === true }));
}
