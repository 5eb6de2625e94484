"""Check the gateway's signed assertion with PyJWT (Debian: python3-jwt).

Copy this file into an app behind caddy-session's `assertion`. A request
passes only if its X-Session-Assertion is a JWT signed by a key of the
gateway's JWK Set (EdDSA with an Ed25519 key or ES256 with a P-256 key: the
algorithm comes from the key, never from the token, so never "none" or
HMAC), with the expected iss and aud, within iat..exp (10 s leeway), and
whose sdh is the SHA-256 of the X-Session header the request carries.

    verifier = Verifier("http://127.0.0.1:8080/.well-known/caddy-session/jwks.json",
                        audience="python-example")
    claims = verifier.verify_headers(self.headers)  # raises Refused

The key set is fetched on first use, again after an hour, and again when a
token names an unknown kid, at most once every 30 seconds.
"""

import base64
import hashlib
import hmac
import json
import threading
import time
import urllib.request

import jwt

# The two algorithms, each pinned to its key type.
ALGORITHMS = {("OKP", "Ed25519"): "EdDSA", ("EC", "P-256"): "ES256"}


class Refused(Exception):
    """The request did not come through the gateway, or was changed after."""


def data_hash(value):
    """The sdh of an X-Session value: base64url, unpadded, of its SHA-256."""
    digest = hashlib.sha256(value.encode("latin-1")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


class Verifier:
    def __init__(self, jwks_url, audience, issuer="caddy-session", header_prefix="X-Session",
                 leeway=10, refetch_interval=30, max_age=3600):
        if not audience:
            raise ValueError("audience is required")
        self.jwks_url = jwks_url
        self.audience = audience
        self.issuer = issuer
        self.data_header = header_prefix
        self.assertion_header = header_prefix + "-Assertion"
        self.leeway = leeway
        self.refetch_interval = refetch_interval
        self.max_age = max_age
        self._lock = threading.Lock()
        self._keys = {}  # kid -> (algorithm, key)
        self._fetched = None  # monotonic time of the last good fetch
        self._attempted = None  # monotonic time of the last fetch

    def _fetch(self):
        with urllib.request.urlopen(self.jwks_url, timeout=10) as resp:
            doc = json.loads(resp.read(1 << 20))
        keys = {}
        for k in doc.get("keys", []):
            alg = ALGORITHMS.get((k.get("kty"), k.get("crv")))
            if alg is None or not k.get("kid") or k.get("alg", alg) != alg or k.get("use", "sig") != "sig":
                continue  # RSA, HMAC ("oct"), other curves: never
            try:
                keys[k["kid"]] = (alg, jwt.PyJWK(k, algorithm=alg).key)
            except jwt.exceptions.PyJWTError:
                continue
        return keys

    def _key(self, kid):
        now = time.monotonic()
        with self._lock:
            found = self._keys.get(kid)
            fresh = self._fetched is not None and now - self._fetched < self.max_age
            if found and fresh:
                return found
            if self._attempted is not None and now - self._attempted < self.refetch_interval:
                return found  # rate-limited: forged kids cannot make us hammer the gateway
            self._attempted = now
        try:
            keys = self._fetch()
        except (OSError, ValueError):
            return found  # the gateway is unreachable: keep the keys we have
        with self._lock:
            self._keys, self._fetched = keys, time.monotonic()
        return keys.get(kid)

    def verify(self, assertion, data):
        """Return the claims of assertion, checked against the X-Session
        value data ("" when the request had none). Raise Refused."""
        if not assertion:
            raise Refused("no assertion")
        try:
            header = jwt.get_unverified_header(assertion)
            found = self._key(header.get("kid"))
            if found is None:
                raise Refused("unknown kid")
            alg, key = found
            if header.get("alg") != alg:
                raise Refused("alg %r does not fit the key (%s)" % (header.get("alg"), alg))
            claims = jwt.decode(assertion, key, algorithms=[alg], audience=self.audience,
                                issuer=self.issuer, leeway=self.leeway,
                                options={"require": ["iss", "aud", "iat", "exp", "sdh"]})
        except jwt.exceptions.PyJWTError as e:
            raise Refused(str(e)) from None
        if not hmac.compare_digest(data_hash(data), str(claims["sdh"])):
            raise Refused("X-Session is not the one the gateway sent")
        return claims

    def verify_headers(self, headers):
        """verify for an http.server request's headers: one assertion, at
        most one X-Session."""
        assertions = headers.get_all(self.assertion_header) or []
        data = headers.get_all(self.data_header) or []
        if len(assertions) != 1 or len(data) > 1:
            raise Refused("want one assertion and at most one X-Session")
        return self.verify(assertions[0], data[0] if data else "")
