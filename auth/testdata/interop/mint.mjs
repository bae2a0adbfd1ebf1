// Mints, with the jose package (an implementation nobody here wrote), an
// issuer JWKS, an access token bound to a DPoP key, a DPoP proof for one
// request, and an unbound bearer token. Prints them as JSON on stdout.
import * as jose from 'jose';
import { createHash } from 'node:crypto';

const [htm, htu] = process.argv.slice(2);
const iss = 'https://jose-issuer.example/';
const aud = 'https://api.example.com';
const now = Math.floor(Date.now() / 1000);

const out = { jwks: { keys: [] }, tokens: {} };
for (const alg of ['ES256', 'RS256', 'PS256', 'EdDSA']) {
  const { publicKey, privateKey } = await jose.generateKeyPair(alg, { extractable: true });
  const jwk = await jose.exportJWK(publicKey);
  jwk.kid = 'jose-' + alg;
  jwk.use = 'sig';
  out.jwks.keys.push(jwk);
  out.tokens[alg] = await new jose.SignJWT({ scope: 'orders:read', client_id: 'app' })
    .setProtectedHeader({ alg, kid: jwk.kid, typ: 'at+jwt' })
    .setIssuer(iss).setAudience(aud).setSubject('user-' + alg)
    .setIssuedAt(now).setExpirationTime(now + 300).setJti(crypto.randomUUID())
    .sign(privateKey);
}

// The device's DPoP key and the token bound to it.
const issuerKey = await jose.generateKeyPair('ES256', { extractable: true });
const issuerJWK = await jose.exportJWK(issuerKey.publicKey);
issuerJWK.kid = 'jose-dpop-issuer';
out.jwks.keys.push(issuerJWK);
const device = await jose.generateKeyPair('ES256', { extractable: true });
const deviceJWK = await jose.exportJWK(device.publicKey);
const jkt = await jose.calculateJwkThumbprint(deviceJWK, 'sha256');
out.jkt = jkt;
out.boundToken = await new jose.SignJWT({ cnf: { jkt } })
  .setProtectedHeader({ alg: 'ES256', kid: issuerJWK.kid, typ: 'at+jwt' })
  .setIssuer(iss).setAudience(aud).setSubject('device-user')
  .setIssuedAt(now).setExpirationTime(now + 300)
  .sign(issuerKey.privateKey);
const ath = createHash('sha256').update(out.boundToken).digest('base64url');
out.proof = await new jose.SignJWT({ htm, htu, ath })
  .setProtectedHeader({ alg: 'ES256', typ: 'dpop+jwt', jwk: deviceJWK })
  .setIssuedAt(now).setJti(crypto.randomUUID())
  .sign(device.privateKey);
out.iss = iss;
out.aud = aud;
console.log(JSON.stringify(out));
