// Starts oidc-provider (a certified OpenID Provider nobody here wrote) on
// 127.0.0.1 with a free port, issuing opaque access tokens by
// client_credentials for the resource https://api.example.com, with
// introspection (RFC 7662) and revocation (RFC 7009) enabled. Prints one
// JSON line with the issuer, the endpoints and the clients, then serves
// until killed.
import { createServer } from 'node:http';
import Provider from 'oidc-provider';

const resource = 'https://api.example.com';
const server = createServer();
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
const issuer = `http://127.0.0.1:${server.address().port}`;

const provider = new Provider(issuer, {
  clients: [
    // The mobile app's backend-for-frontend, which gets tokens.
    { client_id: 'app', client_secret: 'app-secret-for-interop-tests', grant_types: ['client_credentials'], redirect_uris: [], response_types: [], scope: 'orders:read' },
    // apiguard, the resource server, which introspects them.
    { client_id: 'rs', client_secret: 'rs-secret-for-interop-tests', grant_types: [], redirect_uris: [], response_types: [] },
  ],
  scopes: ['openid', 'orders:read'],
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    introspection: { enabled: true },
    revocation: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => resource,
      useGrantedResource: () => true,
      getResourceServerInfo: () => ({ scope: 'orders:read', audience: resource, accessTokenFormat: 'opaque', accessTokenTTL: 300 }),
    },
  },
});
server.on('request', provider.callback());

console.log(JSON.stringify({
  issuer,
  resource,
  token_endpoint: `${issuer}/token`,
  introspection_endpoint: `${issuer}/token/introspection`,
  revocation_endpoint: `${issuer}/token/revocation`,
  client: { id: 'app', secret: 'app-secret-for-interop-tests' },
  resource_server: { id: 'rs', secret: 'rs-secret-for-interop-tests' },
}));
