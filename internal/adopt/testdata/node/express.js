// A legacy Express app, written as real apps write it: express-session
// with a secret list and connect-mongo as the store ({_id: sid, session,
// expires} in a "sessions" collection).
//
// Environment: EXPRESS_SECRETS (comma-separated, newest first), COOKIE
// (the session cookie name), STRINGIFY ("false" stores the session as an
// object instead of connect-mongo's default JSON string), MONGODB_URI,
// MONGODB_DB, MAX_AGE (ms; unset: a browser-session cookie).
// It listens on 127.0.0.1 on a free port and prints "listening <port>".
'use strict';

const express = require('express');
const session = require('express-session');
const { MongoStore } = require('connect-mongo');

const app = express();
app.use(session({
  name: process.env.COOKIE || 'connect.sid',
  secret: process.env.EXPRESS_SECRETS.split(','),
  resave: false,
  saveUninitialized: false,
  cookie: process.env.MAX_AGE ? { maxAge: Number(process.env.MAX_AGE) } : {},
  store: MongoStore.create({
    mongoUrl: process.env.MONGODB_URI,
    dbName: process.env.MONGODB_DB,
    collectionName: 'sessions',
    stringify: process.env.STRINGIFY !== 'false',
    // FerretDB refuses TTL indexes (code 238); a real deployment keeps the
    // default ('native') and gets connect-mongo's TTL index on expires.
    autoRemove: 'disabled',
  }),
}));

app.get('/login', (req, res) => {
  req.session.user = req.query.user || 'alice';
  req.session.roles = ['admin', 'dev'];
  req.session.prefs = { theme: 'dark', tz: 'Europe/Paris', n: 3, ratio: 0.5, deep: { ok: true, none: null } };
  req.session.greeting = 'héllo wörld ✓';
  // Data the gateway must refuse: a padded session over its size cap, a
  // key holding a dot.
  if (req.query.pad) req.session.pad = 'x'.repeat(Number(req.query.pad));
  if (req.query.dotted) req.session['a.b'] = 1;
  res.json({ ok: true });
});

app.get('/logout', (req, res, next) => {
  req.session.destroy((err) => (err ? next(err) : res.json({ ok: true })));
});

app.get('/whoami', (req, res) => {
  const { cookie, ...data } = req.session;
  res.json(data);
});

const server = app.listen(0, '127.0.0.1', () => {
  console.log('listening ' + server.address().port);
});
