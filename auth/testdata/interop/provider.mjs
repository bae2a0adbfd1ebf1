// Runs oidc-provider (a certified OpenID Provider nobody here wrote) on
// 127.0.0.1, on a free port, for apiguard's interop tests. It prints one
// JSON line on stdout once it listens:
//
//   {"issuer":"http://127.0.0.1:PORT","resource":"...","format":"jwt",
//    "clients":{"cc":{"id":"...","secret":"..."},"rs":{"id":"...","secret":"..."}}}
//
// and runs until its stdin closes (the Go test holds it open), so that a
// test that dies leaves no server behind.
//
// Settings, by environment:
//   APIGUARD_RESOURCE      the resource indicator (RFC 8707) tokens are
//                          issued for; it is their aud. Required.
//   APIGUARD_TOKEN_FORMAT  'jwt' (RFC 9068 JWT access tokens, the default)
//                          or 'opaque' (for introspection tests).
//   APIGUARD_SCOPES        the resource's scopes. Default: 'orders:read orders:write'.
//
// Clients: "cc" gets tokens with the client_credentials grant
// (client_secret_basic); "rs" is the resource server's own client, for
// the introspection endpoint (RFC 7662), which is enabled. Secrets are
// random per run.
import http from 'node:http';
import { randomBytes } from 'node:crypto';
import * as jose from 'jose';
import Provider from 'oidc-provider';

const resource = process.env.APIGUARD_RESOURCE;
if (!resource) {
  console.error('provider.mjs: APIGUARD_RESOURCE is required');
  process.exit(2);
}
const format = process.env.APIGUARD_TOKEN_FORMAT || 'jwt';
if (format !== 'jwt' && format !== 'opaque') {
  console.error(`provider.mjs: APIGUARD_TOKEN_FORMAT must be jwt or opaque, not ${format}`);
  process.exit(2);
}
const scopes = process.env.APIGUARD_SCOPES || 'orders:read orders:write';

// Signing keys: RS256 for ID tokens (oidc-provider's default), ES256 for
// access tokens.
const keys = [];
for (const alg of ['RS256', 'ES256']) {
  const { privateKey } = await jose.generateKeyPair(alg, { extractable: true });
  const jwk = await jose.exportJWK(privateKey);
  keys.push({ ...jwk, alg, use: 'sig', kid: `op-${alg}-${randomBytes(4).toString('hex')}` });
}

const secret = () => randomBytes(24).toString('base64url');
const clients = {
  cc: { id: 'apiguard-cc', secret: secret() },
  rs: { id: 'apiguard-rs', secret: secret() },
};

const server = http.createServer();
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
const issuer = `http://127.0.0.1:${server.address().port}`;

const provider = new Provider(issuer, {
  jwks: { keys },
  cookies: { keys: [secret()] },
  clients: [
    {
      client_id: clients.cc.id,
      client_secret: clients.cc.secret,
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
      token_endpoint_auth_method: 'client_secret_basic',
    },
    {
      client_id: clients.rs.id,
      client_secret: clients.rs.secret,
      grant_types: [],
      response_types: [],
      redirect_uris: [],
      token_endpoint_auth_method: 'client_secret_basic',
    },
  ],
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    introspection: {
      enabled: true,
      // The resource server may introspect any token issued for it.
      allowedPolicy: async (ctx, client, token) => client.clientId === clients.rs.id || token.clientId === client.clientId,
    },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => resource,
      useGrantedResource: () => true,
      getResourceServerInfo: (ctx, indicator) => {
        if (indicator !== resource) {
          throw new Provider.errors.InvalidTarget();
        }
        return {
          scope: scopes,
          audience: resource,
          accessTokenTTL: 300,
          accessTokenFormat: format,
          ...(format === 'jwt' ? { jwt: { sign: { alg: 'ES256' } } } : {}),
        };
      },
    },
  },
});
server.on('request', provider.callback());

console.log(JSON.stringify({ issuer, resource, format, clients }));

process.stdin.on('end', () => server.close(() => process.exit(0)));
process.stdin.resume();
