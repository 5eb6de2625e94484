<?php
// Front controller: Caddy's php_fastcgi sends every path that is not a file
// here, so this is the whole router.

declare(strict_types=1);

require __DIR__ . '/../lib/app.php';
require __DIR__ . '/../lib/assertion.php';

// Every request must carry the gateway's signed assertion for its X-Session
// (lib/assertion.php, with sodium): anything that reaches PHP another way (a
// second vhost without `session`, fpm's port exposed, a forged X-Session)
// gets 401. The settings come from php-fpm's pool (run-fpm.sh), never from a
// request.
try {
    assertion_verify(
        getenv('ASSERTION_JWKS_URL') ?: 'http://127.0.0.1:8080/.well-known/caddy-session/jwks.json',
        getenv('ASSERTION_AUDIENCE') ?: 'example-app'
    );
} catch (AssertionRefused $e) {
    http_response_code(401);
    header('Content-Type: application/json');
    header('Cache-Control: no-store');
    echo json_encode(['error' => 'the request did not come through the gateway']), "\n";
    exit;
}

$path = parse_url($_SERVER['REQUEST_URI'] ?? '/', PHP_URL_PATH) ?: '/';
// Behind a path prefix (BASE_PATH=/blog from php-fpm's pool, run-fpm.sh: the
// "blog" of Caddyfile.example's BLOG=on), routes are matched below it.
$base = getenv('BASE_PATH') ?: '';
if ($base !== '' && strncmp($path, $base . '/', strlen($base) + 1) === 0) {
    $path = substr($path, strlen($base)) ?: '/';
}
$post = ($_SERVER['REQUEST_METHOD'] ?? 'GET') === 'POST';

switch ($path) {
case '/':
    $user = current_user();
    $who = $user !== null ? '<p id="status">Logged in as ' . e($user['name'] ?? '') . '.</p>' : '<p id="status">You are not logged in.</p>';
    page('Home', $who . '
<ul>
<li><a href="/account">Account</a> (needs a session; Caddy sends you to log in)</li>
<li><a href="/login">Log in</a></li>
</ul>');
    break;

case '/login':
    $next = param('next');
    $name = trim(param('name', false));
    // 1 to 100 characters of valid UTF-8 (no mbstring needed).
    if ($post && preg_match('/^.{1,100}$/su', $name) === 1) {
        // Update replaces the whole session with the new user's data, so
        // nothing of a previous visitor (or user) carries over; regenerate
        // gives it a new token at the privilege change (defeats session
        // fixation). Keep a key across the login by copying it here.
        session_update(['user' => ['name' => $name]]);
        session_control('regenerate');
        redirect(safe_next($next));
        break;
    }
    $err = $post ? '<p id="error">Please enter a name (up to 100 characters).</p>' : '';
    page('Log in', $err . '
<form method="post" action="/login">
<input type="hidden" name="next" value="' . e(safe_next($next)) . '">
<label for="name">Name</label>
<input id="name" name="name" maxlength="100" required autofocus>
<button id="submit" type="submit">Log in</button>
</form>', $post ? 400 : 200);
    break;

case '/account':
    $data = session();
    $user = $data['user'] ?? null;
    if (!is_array($user)) {
        // Caddy's require_session already guards /account; this only
        // matters when the app is reached without it.
        redirect('/login?next=/account');
        break;
    }
    $visits = (is_int($data['visits'] ?? null) ? $data['visits'] : 0) + 1;
    session_patch(['visits' => $visits]);
    page('Account', '
<p>Hello, <span id="user">' . e($user['name'] ?? '') . '</span>.</p>
<p>Visits: <span id="counter">' . $visits . '</span></p>
<p>Session as received in X-Session:</p>
<pre id="session">' . e(json_encode((object)$data, JSON_PRETTY_PRINT | JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE)) . '</pre>
<p id="snapshot">This is the snapshot this request was given, before the page\'s own change: the counter above
already counts this visit, so it is one ahead of the snapshot\'s "visits".</p>
<form method="post" action="/logout-everywhere">
<button id="logout-everywhere" type="submit">Log out everywhere</button></form>
');
    break;

case '/logout':
    // POST only: a GET (a link or an image on another site) must not log
    // anyone out.
    if (!$post) {
        header('Allow: POST');
        page('Method not allowed', '<p>Log out with the button at the top of the page.</p>', 405);
        break;
    }
    session_control('destroy');
    redirect('/');
    break;

case '/logout-everywhere':
    // revoke-all ends every session of this session's subject (the
    // Caddyfile's `subject user.name`), this one included. Without a session
    // there is nothing to end, and revoke-all would be refused (502), so only
    // a logged-in user sends it. POST only: it changes state.
    if (!$post) {
        header('Allow: POST');
        page('Method not allowed', '<p>Log out with the button at the top of the page.</p>', 405);
        break;
    }
    if (current_user() !== null) {
        session_control('revoke-all');
    }
    redirect('/');
    break;

case '/debug/headers':
    // Every request header as PHP sees it (HTTP_* keys of $_SERVER), so
    // tests can prove what never arrives.
    $got = [];
    foreach ($_SERVER as $k => $v) {
        if (strncmp((string)$k, 'HTTP_', 5) === 0) {
            $got[$k] = $v;
        }
    }
    header('Content-Type: application/json');
    echo json_encode((object)$got);
    break;

default:
    page('Not found', '<p>Nothing here.</p>', 404);
}
