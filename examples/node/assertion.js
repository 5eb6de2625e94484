'use strict';
// Checks the gateway's signed assertion with `jose` (npm). Copy this file
// into an app behind caddy-session's `assertion`.
//
// A request passes only if X-Session-Assertion is a JWT signed by a key of
// the gateway's JWK Set with EdDSA (Ed25519) or ES256 (P-256), the algorithm
// fitting the key (never "none", never HMAC), with the expected iss and aud,
// within iat..exp (10 s leeway), and whose sdh is the SHA-256 of the
// X-Session header the request carries. jose's remote key set is fetched on
// first use, again after an hour, and on an unknown kid at most every 30 s.
//
//   const verify = assertionVerifier({ jwksUrl, audience: 'node-example' });
//   const claims = await verify(req); // throws on refusal

const crypto = require('node:crypto');

let josePromise;
const jose = () => (josePromise ??= import('jose'));

// The sdh of an X-Session value: base64url, unpadded, of its SHA-256.
function dataHash(value) {
  return crypto.createHash('sha256').update(value, 'latin1').digest('base64url');
}

class AssertionRefused extends Error {}

function assertionVerifier({ jwksUrl, audience, issuer = 'caddy-session', headerPrefix = 'X-Session' }) {
  if (!audience) throw new Error('audience is required');
  const dataName = headerPrefix.toLowerCase();
  const assertionName = dataName + '-assertion';
  let keys;
  return async function verify(req) {
    const { createRemoteJWKSet, jwtVerify } = await jose();
    keys ??= createRemoteJWKSet(new URL(jwksUrl), { cooldownDuration: 30_000, cacheMaxAge: 3_600_000 });
    // headersDistinct keeps repeated headers apart (Node would join them).
    const assertions = req.headersDistinct[assertionName] ?? [];
    const data = req.headersDistinct[dataName] ?? [];
    if (assertions.length !== 1 || data.length > 1) {
      throw new AssertionRefused('want one assertion and at most one X-Session');
    }
    let payload;
    try {
      ({ payload } = await jwtVerify(assertions[0], keys, {
        issuer, audience, algorithms: ['EdDSA', 'ES256'], clockTolerance: 10,
        requiredClaims: ['iss', 'aud', 'iat', 'exp', 'sdh'],
      }));
    } catch (e) {
      // A bad token, an unknown kid, or a key set that cannot be fetched.
      throw new AssertionRefused(e.code || e.message);
    }
    const want = Buffer.from(dataHash(data[0] ?? ''));
    const got = Buffer.from(String(payload.sdh));
    if (want.length !== got.length || !crypto.timingSafeEqual(want, got)) {
      throw new AssertionRefused('X-Session is not the one the gateway sent');
    }
    return payload;
  };
}

module.exports = { assertionVerifier, dataHash, AssertionRefused };
