#!/usr/bin/env node
// A tiny Express app with server-side sessions, and no session code.
//
// It runs behind Caddy with the `session` handler, which does all the session
// work: the app reads the session from the X-Session request header and
// changes it with X-Session-Update / X-Session-Patch / X-Session-Control
// response headers. No express-session, no cookie handling, no store.
//
//   npm ci && APP_PORT=8000 node server.js
'use strict';

const express = require('express');
const { assertionVerifier, AssertionRefused } = require('./assertion');

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

// Caddy always sends X-Session ({} without a session) and strips any
// client-sent header of that name, so this JSON can be trusted.
function readSession(req) {
  try {
    const data = JSON.parse(req.get('X-Session') || '{}');
    return data && typeof data === 'object' && !Array.isArray(data) ? data : {};
  } catch {
    return {};
  }
}

// The logged-in user ({name}) of the session data, or null.
function userOf(data) {
  return data.user && typeof data.user === 'object' && !Array.isArray(data.user) ? data.user : null;
}

// Every page's header: who is logged in, with a Log out button. Logging out
// changes state, so it is a POST form, never a link: a GET (a link or an
// image on another site) must not log anyone out.
function nav(user) {
  const links = '<a href="/">Home</a> | <a href="/account">Account</a>';
  if (!user) return `<nav>${links} | <a href="/login">Log in</a></nav>`;
  return `<nav>${links} | Logged in as <b id="whoami">${esc(user.name)}</b>
<form method="post" action="/logout" style="display:inline"><button id="logout" type="submit">Log out</button></form></nav>`;
}

// Sends an HTML page whose header shows who is logged in.
function page(req, res, status, title, body) {
  res.status(status).set({
    'Content-Type': 'text/html; charset=utf-8',
    'Cache-Control': 'no-store',
  }).send(`<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>${esc(title)}</title></head>
<body>
${nav(userOf(req.sessionData))}
<h1>${esc(title)}</h1>
${body}
</body>
</html>
`);
}

function loginForm(req, res, next, error = '') {
  const err = error ? `<p id="error">${esc(error)}</p>` : '';
  page(req, res, error ? 400 : 200, 'Log in', `${err}
<form method="post" action="/login">
<input type="hidden" name="next" value="${esc(safeNext(next))}">
<label for="name">Name</label>
<input id="name" name="name" maxlength="100" required autofocus>
<button id="submit" type="submit">Log in</button>
</form>`);
}

const app = express();

// Every request must carry the gateway's signed assertion for its X-Session
// (assertion.js, with jose): anything that reaches the app another way (a
// port exposed by mistake, another vhost, a forged X-Session) gets 401.
const verify = assertionVerifier({
  jwksUrl: process.env.ASSERTION_JWKS_URL || 'http://127.0.0.1:8080/.well-known/caddy-session/jwks.json',
  audience: process.env.ASSERTION_AUDIENCE || 'example-app',
});
app.use(async (req, res, next) => {
  try {
    await verify(req);
  } catch (e) {
    if (!(e instanceof AssertionRefused)) return next(e);
    return res.status(401).json({ error: 'the request did not come through the gateway' });
  }
  next();
});
app.disable('x-powered-by');
app.set('etag', false);
app.use(express.urlencoded({ extended: false, limit: '64kb' }));
app.use((req, res, next) => {
  req.sessionData = readSession(req);
  next();
});

app.get('/', (req, res) => {
  const user = userOf(req.sessionData);
  const who = user ? `<p id="status">Logged in as ${esc(user.name)}.</p>` : '<p id="status">You are not logged in.</p>';
  page(req, res, 200, 'Home', `${who}
<ul>
<li><a href="/account">Account</a> (needs a session; Caddy sends you to log in)</li>
<li><a href="/login">Log in</a></li>
</ul>`);
});

app.get('/login', (req, res) => loginForm(req, res, String(req.query.next || '')));

app.post('/login', (req, res) => {
  const name = String(req.body.name || '').trim();
  const next = String(req.body.next ?? req.query.next ?? '');
  if (!name || name.length > 100) {
    loginForm(req, res, next, 'Please enter a name (up to 100 characters).');
    return;
  }
  // Update replaces the whole session with the new user's data, so nothing
  // of a previous visitor (or user) carries over; regenerate gives it a new
  // token at the privilege change (defeats session fixation). Keep a key
  // across the login by copying it here.
  res.set({
    'X-Session-Update': headerJSON({ user: { name } }),
    'X-Session-Control': 'regenerate',
  }).redirect(303, safeNext(next)); // 303: the browser follows a POST with a GET
});

app.get('/account', (req, res) => {
  const data = req.sessionData;
  const user = userOf(data);
  if (!user) {
    // Caddy's require_session already guards /account; this only matters
    // when the app is reached without it.
    res.redirect(303, '/login?next=/account');
    return;
  }
  const visits = (Number.isInteger(data.visits) ? data.visits : 0) + 1;
  res.set('X-Session-Patch', headerJSON({ visits }));
  // JSON.parse decoded X-Session's \uXXXX escapes: the page shows the data
  // as written.
  page(req, res, 200, 'Account', `
<p>Hello, <span id="user">${esc(user.name)}</span>.</p>
<p>Visits: <span id="counter">${visits}</span></p>
<p>Session as received in X-Session:</p>
<pre id="session">${esc(JSON.stringify(data, null, 2))}</pre>
<p id="snapshot">This is the snapshot this request was given, before the page's own change: the counter above
already counts this visit, so it is one ahead of the snapshot's "visits".</p>
<form method="post" action="/logout-everywhere">
<button id="logout-everywhere" type="submit">Log out everywhere</button></form>
`);
});

app.post('/logout', (req, res) => {
  res.set('X-Session-Control', 'destroy').redirect(303, '/');
});

// revoke-all ends every session of this session's subject (the Caddyfile's
// `subject user.name`), this one included. Without a session there is
// nothing to end, and revoke-all would be refused (502), so only a logged-in
// user sends it.
app.post('/logout-everywhere', (req, res) => {
  if (userOf(req.sessionData)) res.set('X-Session-Control', 'revoke-all');
  res.redirect(303, '/');
});

// Logging out is POST only.
app.all(['/logout', '/logout-everywhere'], (req, res) => {
  res.set('Allow', 'POST');
  page(req, res, 405, 'Method not allowed', '<p>Log out with the button at the top of the page.</p>');
});

// Every header as received (raw names, repeats joined), so tests can prove
// what never arrives. Drop it in a real app.
app.get('/debug/headers', (req, res) => {
  const got = {};
  for (let i = 0; i < req.rawHeaders.length; i += 2) {
    const name = req.rawHeaders[i];
    got[name] = name in got ? `${got[name]}, ${req.rawHeaders[i + 1]}` : req.rawHeaders[i + 1];
  }
  res.type('application/json').send(JSON.stringify(got));
});

app.use((req, res) => page(req, res, 404, 'Not found', '<p>Nothing here.</p>'));

// A malformed or oversized form: 400, never a stack trace.
app.use((err, req, res, next) => { // eslint-disable-line no-unused-vars
  page(req, res, err.status && err.status < 500 ? err.status : 400, 'Bad request', '');
});

// Loopback only: nothing may reach the app except through Caddy, which
// strips client-sent X-Session headers (app.listen(port) alone would listen
// on every interface).
const port = Number(process.env.APP_PORT || 8000);
app.listen(port, '127.0.0.1', () => {
  console.log(`node example listening on http://127.0.0.1:${port}`);
});

// Exit promptly when the test harness or demo script stops us.
process.on('SIGTERM', () => process.exit(0));
process.on('SIGINT', () => process.exit(0));
