// The OpenID provider of deploy/compose.yaml (VNeID stands here in production):
// oidc-provider (a certified implementation) over HTTPS with one public client, the portal,
// signing ID tokens with RS256. Its development login page ("devInteractions") accepts any login
// and password; the login name becomes the ID token's `sub` (a 12-digit citizen id).
//
// Environment: OIDC_ISSUER, PORTAL_CLIENT_ID, PORTAL_REDIRECT_URI; its TLS certificate and key
// are /etc/oidc/oidc.pem and oidc.key. Development logins only: replace devInteractions with
// the real interaction of the identity provider.
// Prints `oidc-provider: listening on <issuer>` once it accepts connections.

import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import https from 'node:https';

import Provider from 'oidc-provider';

function need(name) {
  const v = process.env[name];
  if (!v) {
    console.error(`provider.mjs: ${name} is not set`);
    process.exit(2);
  }
  return v;
}

const port = 443;
const issuer = need('OIDC_ISSUER');
const clientId = need('PORTAL_CLIENT_ID');
const redirectUri = need('PORTAL_REDIRECT_URI');

// A fresh RS256 signing key for this run.
const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const jwk = { ...privateKey.export({ format: 'jwk' }), kid: `rs-${randomBytes(4).toString('hex')}`, alg: 'RS256', use: 'sig' };

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: clientId,
      application_type: 'web',
      token_endpoint_auth_method: 'none',
      redirect_uris: [redirectUri],
      response_types: ['code'],
      grant_types: ['authorization_code'],
      id_token_signed_response_alg: 'RS256',
    },
  ],
  jwks: { keys: [jwk] },
  pkce: { required: () => true },
  cookies: { keys: [randomBytes(32).toString('hex')] },
  features: { devInteractions: { enabled: true } },
  async findAccount(ctx, sub) {
    return { accountId: sub, async claims() { return { sub }; } };
  },
});

provider.on('server_error', (ctx, err) => console.error('oidc-provider: server_error', err));
provider.on('grant.error', (ctx, err) => console.error('oidc-provider: grant.error', err.message, err.error_description ?? ''));
provider.on('authorization.error', (ctx, err) => console.error('oidc-provider: authorization.error', err.message, err.error_description ?? ''));

const server = https.createServer(
  { cert: readFileSync('/etc/oidc/oidc.pem'), key: readFileSync('/etc/oidc/oidc.key') },
  provider.callback(),
);
server.listen(port, '0.0.0.0', () => {
  console.error(`oidc-provider: listening on ${issuer}`);
});
for (const sig of ['SIGTERM', 'SIGINT']) {
  process.on(sig, () => {
    server.close(() => process.exit(0));
    server.closeAllConnections();
    setTimeout(() => process.exit(0), 2000).unref();
  });
}
