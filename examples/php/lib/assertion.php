<?php
// Checks the gateway's signed assertion with PHP's built-in sodium (Ed25519,
// alg EdDSA; no composer). Copy this file into an app behind caddy-session's
// `assertion` (with the default key, or an Ed25519 `key`: sodium has no
// P-256).
//
// A request passes only if X-Session-Assertion is a JWT signed with EdDSA by
// an Ed25519 key of the gateway's JWK Set (the algorithm comes from the key:
// never "none", never HMAC), with the expected iss and aud, within iat..exp
// (10 s leeway), and whose sdh is the SHA-256 of the X-Session header sent.
//
// The key set is cached in a file under the temp directory, fetched again
// after an hour, and on an unknown kid at most once every 30 seconds.

declare(strict_types=1);

final class AssertionRefused extends RuntimeException
{
}

function assertion_b64url_decode(string $s): string
{
    if (preg_match('/^[A-Za-z0-9_-]*$/D', $s) !== 1) {
        throw new AssertionRefused('not base64url');
    }
    $raw = base64_decode(strtr($s, '-_', '+/'), true);
    if ($raw === false) {
        throw new AssertionRefused('not base64url');
    }
    return $raw;
}

// The sdh of an X-Session value: base64url, unpadded, of its SHA-256.
function assertion_data_hash(string $value): string
{
    return rtrim(strtr(base64_encode(hash('sha256', $value, true)), '+/', '-_'), '=');
}

// kid => 32-byte Ed25519 public key, from the cache file or the gateway.
function assertion_keys(string $jwksUrl, ?string $kid): array
{
    $cache = sys_get_temp_dir() . '/caddy-session-jwks-' . hash('sha256', $jwksUrl) . '.json';
    $cached = is_file($cache) ? json_decode((string) file_get_contents($cache), true) : null;
    $keys = is_array($cached) ? ($cached['keys'] ?? []) : [];
    $age = is_array($cached) ? time() - (int) ($cached['fetched'] ?? 0) : PHP_INT_MAX;
    $attemptAge = is_file($cache) ? time() - (int) filemtime($cache) : PHP_INT_MAX;
    $known = $kid !== null && isset($keys[$kid]);
    if (($known && $age < 3600) || $attemptAge < 30) {
        return $keys; // fresh, or rate-limited: forged kids cannot make us hammer the gateway
    }
    $ctx = stream_context_create(['http' => ['timeout' => 10, 'ignore_errors' => false]]);
    $doc = @file_get_contents($jwksUrl, false, $ctx, 0, 1 << 20);
    $set = $doc === false ? null : json_decode($doc, true);
    if (!is_array($set) || !is_array($set['keys'] ?? null)) {
        @touch($cache); // remember the attempt; keep the keys we have
        return $keys;
    }
    $fresh = [];
    foreach ($set['keys'] as $k) {
        if (!is_array($k) || ($k['kty'] ?? '') !== 'OKP' || ($k['crv'] ?? '') !== 'Ed25519'
            || !is_string($k['kid'] ?? null) || ($k['alg'] ?? 'EdDSA') !== 'EdDSA' || ($k['use'] ?? 'sig') !== 'sig') {
            continue; // RSA, HMAC ("oct"), P-256 (not in sodium): never
        }
        try {
            $x = assertion_b64url_decode((string) ($k['x'] ?? ''));
        } catch (AssertionRefused $e) {
            continue;
        }
        if (strlen($x) === SODIUM_CRYPTO_SIGN_PUBLICKEYBYTES) {
            $fresh[$k['kid']] = bin2hex($x);
        }
    }
    file_put_contents($cache, json_encode(['fetched' => time(), 'keys' => $fresh]), LOCK_EX);
    return $fresh;
}

// Returns the claims of the request's assertion; throws AssertionRefused.
// $_SERVER holds one value per header (a repeated header arrives joined
// with ", ", which no assertion or canonical X-Session value contains).
function assertion_verify(string $jwksUrl, string $audience, string $issuer = 'caddy-session', int $leeway = 10): array
{
    $token = $_SERVER['HTTP_X_SESSION_ASSERTION'] ?? '';
    $data = $_SERVER['HTTP_X_SESSION'] ?? '';
    if ($token === '' || strlen($token) > 8192) {
        throw new AssertionRefused('no assertion');
    }
    $parts = explode('.', $token);
    if (count($parts) !== 3) {
        throw new AssertionRefused('not a compact JWS');
    }
    $header = json_decode(assertion_b64url_decode($parts[0]), true);
    $claims = json_decode(assertion_b64url_decode($parts[1]), true);
    $sig = assertion_b64url_decode($parts[2]);
    if (!is_array($header) || !is_array($claims) || isset($header['crit'])) {
        throw new AssertionRefused('bad header or claims');
    }
    if (($header['alg'] ?? '') !== 'EdDSA') {
        throw new AssertionRefused('alg must be EdDSA');
    }
    $kid = is_string($header['kid'] ?? null) ? $header['kid'] : null;
    $key = assertion_keys($jwksUrl, $kid)[$kid ?? ''] ?? null;
    if ($key === null) {
        throw new AssertionRefused('unknown kid');
    }
    if (strlen($sig) !== SODIUM_CRYPTO_SIGN_BYTES
        || !sodium_crypto_sign_verify_detached($sig, $parts[0] . '.' . $parts[1], hex2bin($key))) {
        throw new AssertionRefused('bad signature');
    }
    $now = time();
    $aud = $claims['aud'] ?? null;
    $auds = is_array($aud) ? $aud : [$aud];
    if (($claims['iss'] ?? null) !== $issuer) {
        throw new AssertionRefused('wrong issuer');
    }
    if (!in_array($audience, $auds, true)) {
        throw new AssertionRefused('wrong audience');
    }
    if (!is_int($claims['exp'] ?? null) || $now > $claims['exp'] + $leeway) {
        throw new AssertionRefused('expired');
    }
    if (!is_int($claims['iat'] ?? null) || $claims['iat'] > $now + $leeway) {
        throw new AssertionRefused('issued in the future');
    }
    if (!is_string($claims['sdh'] ?? null) || !hash_equals(assertion_data_hash($data), $claims['sdh'])) {
        throw new AssertionRefused('X-Session is not the one the gateway sent');
    }
    return $claims;
}
