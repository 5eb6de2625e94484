<?php
// Helpers for the example: reading the session Caddy sends, writing changes
// back as response headers, and HTML. No PHP session extension is used: the
// session lives in Caddy's store, not in PHP.

declare(strict_types=1);

// The session data. Caddy always sends X-Session ({} without a session) and
// strips any client-sent header of that name, so this JSON can be trusted.
function session(): array
{
    $data = json_decode($_SERVER['HTTP_X_SESSION'] ?? '{}', true);
    return is_array($data) ? $data : [];
}

// The logged-in user (an array with 'name') of the session, or null.
function current_user(): ?array
{
    $user = session()['user'] ?? null;
    return is_array($user) ? $user : null;
}

// Replaces the whole session with $data (at login: nothing of the previous
// visitor carries over). json_encode escapes non-ASCII as \uXXXX, which keeps
// the header ASCII.
function session_update(array $data): void
{
    header('X-Session-Update: ' . json_encode((object)$data, JSON_THROW_ON_ERROR));
}

// Changes only the keys given (JSON merge patch); null removes a key.
// json_encode escapes non-ASCII as \uXXXX, which keeps the header ASCII.
function session_patch(array $patch): void
{
    header('X-Session-Patch: ' . json_encode($patch, JSON_THROW_ON_ERROR));
}

// "regenerate", "destroy", "max-age=<seconds>", "revoke-others" or
// "revoke-all", comma-separated.
function session_control(string $directives): void
{
    header('X-Session-Control: ' . $directives);
}

// The path to go back to after login, if it is a path on this site.
// "//evil.example" and "/\evil.example" are read by browsers as other hosts,
// and control characters could be stripped into one of those (or split the
// Location header), so only plain printable ASCII paths pass.
function safe_next(string $value): string
{
    if (preg_match('#^/(?![/\\\\])[\x21-\x7e]*$#D', $value) === 1 && strpos($value, '\\') === false) {
        return $value;
    }
    return '/account';
}

// A form field (or, with $query, also a query parameter) as a string; a
// repeated field such as name[]=x arrives as an array and is ignored.
function param(string $key, bool $query = true): string
{
    $v = $_POST[$key] ?? ($query ? $_GET[$key] ?? null : null);
    return is_string($v) ? $v : '';
}

// 303: the browser follows a POST with a GET.
function redirect(string $location): void
{
    header('Location: ' . $location, true, 303);
}

function e($s): string
{
    return htmlspecialchars((string)$s, ENT_QUOTES | ENT_SUBSTITUTE, 'UTF-8');
}

// Every page's header: who is logged in, with a Log out button. Logging out
// changes state, so it is a POST form, never a link.
function nav(): string
{
    $links = '<a href="/">Home</a> | <a href="/account">Account</a>';
    $user = current_user();
    if ($user === null) {
        return "<nav>$links | <a href=\"/login\">Log in</a></nav>";
    }
    return "<nav>$links | Logged in as <b id=\"whoami\">" . e($user['name'] ?? '') . '</b>
<form method="post" action="/logout" style="display:inline"><button id="logout" type="submit">Log out</button></form></nav>';
}

function page(string $title, string $body, int $status = 200): void
{
    http_response_code($status);
    header('Content-Type: text/html; charset=utf-8');
    header('Cache-Control: no-store');
    $t = e($title);
    $nav = nav();
    echo <<<HTML
<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>$t</title></head>
<body>
$nav
<h1>$t</h1>
$body
</body>
</html>

HTML;
}
