// An RFC 9421 client nobody here wrote (the http-message-signatures
// package) signs and verifies requests for apiguard's interop test.
//
//   node interop.mjs sign   < {method, url, headers, body, secret_b64, keyid, nonce}
//   node interop.mjs verify < {method, url, headers, secret_b64}
//
// sign prints the request's headers with Content-Digest, Signature-Input
// and Signature added; verify prints {"verified": true|false}.
import { httpbis, createSigner, createVerifier } from 'http-message-signatures';
import { createHash } from 'node:crypto';

const chunks = [];
for await (const c of process.stdin) chunks.push(c);
const input = JSON.parse(Buffer.concat(chunks).toString());
const secret = Buffer.from(input.secret_b64, 'base64');

if (process.argv[2] === 'sign') {
  const headers = { ...input.headers };
  const fields = ['@method', '@target-uri'];
  if (input.body) {
    headers['content-digest'] = 'sha-256=:' + createHash('sha256').update(input.body).digest('base64') + ':';
    fields.push('content-digest');
  }
  if (headers['authorization']) fields.push('authorization');
  const signed = await httpbis.signMessage({
    key: createSigner(secret, 'hmac-sha256', input.keyid),
    fields,
    params: ['created', 'keyid', 'nonce', 'alg'],
    paramValues: { nonce: input.nonce },
  }, { method: input.method, url: input.url, headers });
  console.log(JSON.stringify(signed.headers));
} else {
  let verified;
  try {
    verified = await httpbis.verifyMessage({
      async keyLookup() {
        return { id: input.keyid, algs: ['hmac-sha256'], verify: createVerifier(secret, 'hmac-sha256') };
      },
    }, { method: input.method, url: input.url, headers: input.headers });
  } catch (e) {
    verified = false;
  }
  console.log(JSON.stringify({ verified: verified === true }));
}
