#!/usr/bin/env python3
"""A tiny app with server-side sessions: the standard library, and PyJWT to
check the gateway's signature.

It runs behind Caddy with the `session` handler, which does all the session
work: the app reads the session from the X-Session request header and changes
it with X-Session-Patch / X-Session-Control response headers. There is no
session code, no cookie handling and no store here.

Every request must carry the gateway's signed assertion (X-Session-Assertion,
checked by assertion.py): a request that reaches the app any other way (a port
exposed by mistake, another vhost, a forged X-Session) gets 401.

    APP_PORT=8000 python3 app.py
    ASSERTION_JWKS_URL  the gateway's key set (default
                        http://127.0.0.1:8080/.well-known/caddy-session/jwks.json)
    ASSERTION_AUDIENCE  the aud the gateway signs (default example-app)
"""

import html
import json
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from assertion import Refused, Verifier

VERIFIER = Verifier(
    os.environ.get("ASSERTION_JWKS_URL", "http://127.0.0.1:8080/.well-known/caddy-session/jwks.json"),
    audience=os.environ.get("ASSERTION_AUDIENCE", "example-app"))


def safe_next(value):
    """Return value if it is a path on this site, else /account.

    "//evil.example" and "/\\evil.example" are read by browsers as other
    hosts, and control characters could be stripped into one of those (or
    split the Location header), so only plain printable ASCII paths pass.
    """
    if (value and value.startswith("/") and not value.startswith(("//", "/\\"))
            and all(0x20 < ord(c) < 0x7F and c != "\\" for c in value)):
        return value
    return "/account"


def user_of(data):
    """The logged-in user (a dict with "name") of the session data, or None."""
    user = data.get("user")
    return user if isinstance(user, dict) else None


def nav(user):
    """Every page's header: who is logged in, with a Log out button.

    Logging out changes state, so it is a POST form, never a link: a GET
    (a link or an image on another site) must not log anyone out.
    """
    links = '<a href="/">Home</a> | <a href="/account">Account</a>'
    if user is None:
        return f'<nav>{links} | <a href="/login">Log in</a></nav>'
    return f"""<nav>{links} | Logged in as <b id="whoami">{html.escape(str(user.get("name")))}</b>
<form method="post" action="/logout" style="display:inline"><button id="logout" type="submit">Log out</button></form></nav>"""


def page(title, body, user=None):
    return f"""<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>{html.escape(title)}</title></head>
<body>
{nav(user)}
<h1>{html.escape(title)}</h1>
{body}
</body>
</html>
"""


# The account and devices pages end with this: log out on every browser and
# device at once (the Log out button is in every page's header).
LOGOUT_EVERYWHERE_FORM = """<form method="post" action="/logout-everywhere">
<button id="logout-everywhere" type="submit">Log out everywhere</button></form>"""

# Fills the devices table from /api/devices, which Caddy's session handler
# answers itself (the Caddyfile's `devices /api/devices`) for the logged-in
# user only: [{"id","current","created","last_seen","expires","user_agent",
# "ip"}], newest first, times in Unix seconds, ip the /24 or /48 of the
# address that logged in. "End" sends DELETE /api/devices/<id> (same origin,
# so the gateway's cross-origin check lets it through); ending this browser's
# own session logs it out.
DEVICES_JS = """
(() => {
  const table = document.getElementById('devices');
  const status = document.getElementById('devices-status');
  const when = (s) => new Date(s * 1000).toISOString().replace('T', ' ').slice(0, 19) + ' UTC';
  async function end(d) {
    const res = await fetch('/api/devices/' + encodeURIComponent(d.id), {method: 'DELETE'});
    if (!res.ok) { status.textContent = 'Could not end it (HTTP ' + res.status + ').'; return; }
    if (d.current) { location.href = '/'; return; }
    await load();
  }
  async function load() {
    try {
      const res = await fetch('/api/devices', {headers: {Accept: 'application/json'}});
      if (!res.ok) throw new Error('HTTP ' + res.status);
      const list = await res.json();
      const body = table.tBodies[0];
      body.replaceChildren();
      for (const d of list) {
        const row = body.insertRow();
        row.dataset.id = d.id;
        if (d.current) row.dataset.current = 'true';
        const label = (d.user_agent || 'unknown browser') + (d.current ? ' (this browser)' : '');
        for (const text of [label, d.ip || '', when(d.created), when(d.last_seen), when(d.expires)]) {
          row.insertCell().textContent = text;
        }
        const button = document.createElement('button');
        button.type = 'button';
        button.className = 'end';
        button.textContent = 'End';
        button.addEventListener('click', () => end(d));
        row.insertCell().append(button);
      }
      status.textContent = list.length + (list.length === 1 ? ' device' : ' devices');
    } catch (err) {
      status.textContent = 'The list is not available (' + err.message + ').';
    }
  }
  load();
})();
"""


class Handler(BaseHTTPRequestHandler):
    # Keep-alive towards Caddy; every response carries Content-Length.
    protocol_version = "HTTP/1.1"

    def from_gateway(self):
        """True when the request carries a valid assertion for its
        X-Session; otherwise answers 401."""
        try:
            VERIFIER.verify_headers(self.headers)
            return True
        except Refused:
            self.send(401, json.dumps({"error": "the request did not come through the gateway"}),
                      "application/json")
            return False

    def session(self):
        # Caddy always sends X-Session ({} without a session) and strips any
        # client-sent header of that name; from_gateway checked that this is
        # the value Caddy signed, so this JSON can be trusted.
        try:
            data = json.loads(self.headers.get("X-Session", "{}"))
        except ValueError:
            data = {}
        return data if isinstance(data, dict) else {}

    def send(self, status, body, ctype="text/html; charset=utf-8", headers=()):
        raw = body.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(raw)))
        self.send_header("Cache-Control", "no-store")
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(raw)

    def page(self, status, title, body, headers=()):
        """Sends an HTML page whose header shows who is logged in."""
        self.send(status, page(title, body, user_of(self.session())), headers=headers)

    def redirect(self, location, headers=()):
        # 303: the browser follows a POST with a GET.
        self.send(303, "", headers=[("Location", location), *headers])

    def do_GET(self):
        if not self.from_gateway():
            return
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        if url.path == "/":
            self.home()
        elif url.path == "/login":
            self.login_form(query.get("next", [""])[0])
        elif url.path == "/account":
            self.account()
        elif url.path in ("/account/devices", "/account/sessions"):
            # /account/sessions is the page's older address.
            self.devices()
        elif url.path in ("/logout", "/logout-everywhere"):
            # POST only: a GET must not change state (a link or an image on
            # another site could send it).
            self.page(405, "Method not allowed",
                      "<p>Log out with the button at the top of the page.</p>",
                      headers=[("Allow", "POST")])
        elif url.path == "/debug/headers":
            # Every header as received, so tests can prove what never arrives.
            # A repeated header is joined so a duplicate cannot hide.
            got = {k: ", ".join(self.headers.get_all(k)) for k in self.headers.keys()}
            self.send(200, json.dumps(got), "application/json")
        else:
            self.page(404, "Not found", "<p>Nothing here.</p>")

    def do_POST(self):
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        form = parse_qs(self.rfile.read(length).decode("utf-8", "replace"))
        if not self.from_gateway():
            return
        if url.path == "/login":
            nxt = form.get("next", parse_qs(url.query).get("next", [""]))[0]
            self.login(form.get("name", [""])[0].strip(), nxt)
        elif url.path == "/logout":
            self.logout()
        elif url.path == "/logout-everywhere":
            self.logout_everywhere()
        else:
            self.page(405, "Method not allowed", "", headers=[("Allow", "GET")])

    def home(self):
        user = user_of(self.session())
        who = (f'<p id="status">Logged in as {html.escape(str(user.get("name")))}.</p>' if user
               else '<p id="status">You are not logged in.</p>')
        self.page(200, "Home", who + """
<ul>
<li><a href="/account">Account</a> (needs a session; Caddy sends you to log in)</li>
<li><a href="/login">Log in</a></li>
</ul>""")

    def login_form(self, nxt, error=""):
        err = f'<p id="error">{html.escape(error)}</p>' if error else ""
        self.page(400 if error else 200, "Log in", f"""{err}
<form method="post" action="/login">
<input type="hidden" name="next" value="{html.escape(safe_next(nxt))}">
<label for="name">Name</label>
<input id="name" name="name" maxlength="100" required autofocus>
<button id="submit" type="submit">Log in</button>
</form>""")

    def login(self, name, nxt):
        if not name or len(name) > 100:
            self.login_form(nxt, "Please enter a name (up to 100 characters).")
            return
        # Update replaces the whole session with the new user's data, so
        # nothing of a previous visitor (or user) carries over; regenerate
        # gives it a new token at the privilege change (defeats session
        # fixation). Keep a key across the login by copying it here.
        update = json.dumps({"user": {"name": name}})  # ensure_ascii: header-safe
        self.redirect(safe_next(nxt), [("X-Session-Update", update),
                                       ("X-Session-Control", "regenerate")])

    def account(self):
        data = self.session()
        user = user_of(data)
        if user is None:
            # Caddy's require_session already guards /account; this only
            # matters when the app is reached without it.
            self.redirect("/login?next=/account")
            return
        visits = data.get("visits")
        visits = (visits if isinstance(visits, int) and not isinstance(visits, bool) else 0) + 1
        # The JSON is decoded and shown as written (ensure_ascii=False):
        # X-Session escapes non-ASCII as \uXXXX, the page need not.
        self.page(200, "Account", f"""
<p>Hello, <span id="user">{html.escape(str(user.get("name")))}</span>.</p>
<p>Visits: <span id="counter">{visits}</span></p>
<p>Session as received in X-Session:</p>
<pre id="session">{html.escape(json.dumps(data, indent=2, ensure_ascii=False))}</pre>
<p id="snapshot">This is the snapshot this request was given, before the page's own change: the counter above
already counts this visit, so it is one ahead of the snapshot's "visits".</p>
<p><a id="devices-link" href="/account/devices">Your devices</a></p>
{LOGOUT_EVERYWHERE_FORM}""", headers=[("X-Session-Patch", json.dumps({"visits": visits}))])

    def devices(self):
        user = user_of(self.session())
        if user is None:
            self.redirect("/login?next=/account/devices")
            return
        self.page(200, "Your devices", f"""
<p>Signed in as <span id="user">{html.escape(str(user.get("name")))}</span>.
The browsers and devices signed in with this name; end any of them:</p>
<table id="devices">
<thead><tr><th>Browser</th><th>Network</th><th>Signed in</th><th>Last seen</th><th>Expires</th><th></th></tr></thead>
<tbody></tbody>
</table>
<p id="devices-status">Loading...</p>
<noscript><p>This page needs JavaScript to list and end devices.</p></noscript>
{LOGOUT_EVERYWHERE_FORM}
<script>{DEVICES_JS}</script>
""")

    def logout(self):
        # POST only (do_GET answers 405): destroy ends the session and
        # clears the cookie.
        self.redirect("/", [("X-Session-Control", "destroy")])

    def logout_everywhere(self):
        # revoke-all ends every session of this session's subject (the
        # Caddyfile's `subject user.name`), this one included. Without a
        # session there is nothing to end, and revoke-all would be refused
        # (502), so only a logged-in user sends it.
        if user_of(self.session()) is not None:
            self.redirect("/", [("X-Session-Control", "revoke-all")])
        else:
            self.redirect("/")

    def log_message(self, fmt, *args):
        # Default logging includes the client address only; keep it quiet in
        # tests unless asked.
        if os.environ.get("APP_LOG"):
            super().log_message(fmt, *args)


def main():
    port = int(os.environ.get("APP_PORT", "8000"))
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    print(f"python example listening on http://127.0.0.1:{port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
