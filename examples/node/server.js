#!/usr/bin/env node
// A tiny app with server-side sessions, no npm dependencies.
//
// It runs behind Caddy with the `session` handler, which does all the session
// work: the app reads the session from the X-Session request header and
// changes it with X-Session-Patch / X-Session-Control response headers.
//
//   APP_PORT=8000 node server.js
'use strict';

const http = require('node:http');

// JSON for a header value: escape everything outside ASCII, because Node
// would send those characters as Latin-1 bytes (or refuse them).
function headerJSON(value) {
  return JSON.stringify(value).replace(/[\u007f-\uffff]/g,
    (c) => '\\u' + c.charCodeAt(0).toString(16).padStart(4, '0'));
}

// The path to go back to after login, if it is a path on this site.
// "//evil.example" and "/\evil.example" are read by browsers as other hosts,
// and control characters could be stripped into one of those (or split the
// Location header), so only plain printable ASCII paths pass.
function safeNext(value) {
  if (typeof value === 'string' && /^\/(?![\/\\])[\x21-\x7e]*$/.test(value) && !value.includes('\\')) {
    return value;
  }
  return '/account';
}

function esc(s) {
  return String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function page(title, body) {
  return `<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>${esc(title)}</title></head>
<body>
<nav><a href="/">Home</a> | <a href="/account">Account</a> | <a href="/login">Log in</a></nav>
<h1>${esc(title)}</h1>
${body}
</body>
</html>
`;
}

// Caddy always sends X-Session ({} without a session) and strips any
// client-sent header of that name, so this JSON can be trusted.
function session(req) {
  try {
    const data = JSON.parse(req.headers['x-session'] || '{}');
    return data && typeof data === 'object' && !Array.isArray(data) ? data : {};
  } catch {
    return {};
  }
}

function send(res, status, body, type = 'text/html; charset=utf-8', headers = {}) {
  res.writeHead(status, {
    'Content-Type': type,
    'Content-Length': Buffer.byteLength(body),
    'Cache-Control': 'no-store',
    ...headers,
  });
  res.end(body);
}

// 303: the browser follows a POST with a GET.
function redirect(res, location, headers = {}) {
  send(res, 303, '', 'text/html; charset=utf-8', { Location: location, ...headers });
}

function loginForm(res, next, error = '') {
  const err = error ? `<p id="error">${esc(error)}</p>` : '';
  send(res, error ? 400 : 200, page('Log in', `${err}
<form method="post" action="/login">
<input type="hidden" name="next" value="${esc(safeNext(next))}">
<label for="name">Name</label>
<input id="name" name="name" maxlength="100" required autofocus>
<button id="submit" type="submit">Log in</button>
</form>`));
}

function login(res, name, next) {
  if (!name || name.length > 100) {
    loginForm(res, next, 'Please enter a name (up to 100 characters).');
    return;
  }
  // Patch writes only the user key; regenerate gives the session a new token
  // at the privilege change (defeats session fixation).
  redirect(res, safeNext(next), {
    'X-Session-Patch': headerJSON({ user: { name } }),
    'X-Session-Control': 'regenerate',
  });
}

function account(req, res) {
  const data = session(req);
  const user = data.user;
  if (!user || typeof user !== 'object') {
    // Caddy's require_session already guards /account; this only matters
    // when the app is reached without it.
    redirect(res, '/login?next=/account');
    return;
  }
  const visits = (Number.isInteger(data.visits) ? data.visits : 0) + 1;
  send(res, 200, page('Account', `
<p>Hello, <span id="user">${esc(user.name)}</span>.</p>
<p>Visits: <span id="counter">${visits}</span></p>
<p>Session as received in X-Session:</p>
<pre id="session">${esc(JSON.stringify(data, null, 2))}</pre>
<form method="post" action="/logout"><button id="logout" type="submit">Log out</button></form>
<form method="post" action="/logout-everywhere">
<button id="logout-everywhere" type="submit">Log out everywhere</button></form>
`), undefined, { 'X-Session-Patch': headerJSON({ visits }) });
}

// revoke-all ends every session of this session's subject (the Caddyfile's
// `subject user.name`), this one included. Without a session there is
// nothing to end, and revoke-all would be refused (502), so only a logged-in
// user sends it.
function logoutEverywhere(req, res) {
  const user = session(req).user;
  redirect(res, '/', user && typeof user === 'object' ? { 'X-Session-Control': 'revoke-all' } : {});
}

function home(req, res) {
  const user = session(req).user;
  const who = user ? `<p id="status">Logged in as ${esc(user.name)}.</p>` : '<p id="status">You are not logged in.</p>';
  send(res, 200, page('Home', `${who}
<ul>
<li><a href="/account">Account</a> (needs a session; Caddy sends you to log in)</li>
<li><a href="/login">Log in</a></li>
</ul>`));
}

// Every header as received (raw names, repeats joined), so tests can prove
// what never arrives.
function debugHeaders(req, res) {
  const got = {};
  for (let i = 0; i < req.rawHeaders.length; i += 2) {
    const name = req.rawHeaders[i];
    got[name] = name in got ? `${got[name]}, ${req.rawHeaders[i + 1]}` : req.rawHeaders[i + 1];
  }
  send(res, 200, JSON.stringify(got), 'application/json');
}

function readForm(req) {
  return new Promise((resolve, reject) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (chunk) => {
      body += chunk;
      if (body.length > 64 * 1024) req.destroy(new Error('form too large'));
    });
    req.on('end', () => resolve(new URLSearchParams(body)));
    req.on('error', reject);
  });
}

async function handle(req, res) {
  const url = new URL(req.url, 'http://app.invalid');
  if (req.method === 'POST') {
    const form = await readForm(req);
    if (url.pathname === '/login') {
      const next = form.get('next') ?? url.searchParams.get('next') ?? '';
      return login(res, (form.get('name') || '').trim(), next);
    }
    if (url.pathname === '/logout') return redirect(res, '/', { 'X-Session-Control': 'destroy' });
    if (url.pathname === '/logout-everywhere') return logoutEverywhere(req, res);
    return send(res, 405, page('Method not allowed', ''));
  }
  switch (url.pathname) {
    case '/': return home(req, res);
    case '/login': return loginForm(res, url.searchParams.get('next') || '');
    case '/account': return account(req, res);
    case '/logout': return redirect(res, '/', { 'X-Session-Control': 'destroy' });
    case '/debug/headers': return debugHeaders(req, res);
    default: return send(res, 404, page('Not found', '<p>Nothing here.</p>'));
  }
}

const port = Number(process.env.APP_PORT || 8000);
http.createServer((req, res) => {
  handle(req, res).catch(() => {
    if (!res.headersSent) send(res, 400, page('Bad request', ''));
    else res.destroy();
  });
}).listen(port, '127.0.0.1', () => {
  console.log(`node example listening on http://127.0.0.1:${port}`);
});

// Exit promptly when the test harness or demo script stops us.
process.on('SIGTERM', () => process.exit(0));
process.on('SIGINT', () => process.exit(0));
