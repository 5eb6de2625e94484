// A legacy Koa app, written as real apps write it: koa-session with
// app.keys, and either koa-session-mongoose (the classic MongoDB store:
// {_id, data, updatedAt} in a "sessions" collection) or no store at all
// (the session lives in the signed cookie as base64 JSON).
//
// Environment: KOA_KEYS (comma-separated, newest first), COOKIE (the
// session cookie name), STORE ("mongoose" or "cookie"), MONGODB_URI and
// MONGODB_DB (store mode), MAX_AGE (ms, or "session"), ALGORITHM (keygrip's
// HMAC hash; default sha1).
// It listens on 127.0.0.1 on a free port and prints "listening <port>".
'use strict';

const Koa = require('koa');
const session = require('koa-session').default;

async function main() {
  const app = new Koa();
  app.keys = process.env.KOA_KEYS.split(',');
  if (process.env.ALGORITHM) {
    // Apps that want another hash than keygrip's sha1 hand koa a Keygrip.
    const Keygrip = require('keygrip');
    app.keys = new Keygrip(app.keys, process.env.ALGORITHM);
  }
  const opts = { key: process.env.COOKIE || 'koa.sess' };
  if (process.env.MAX_AGE) {
    opts.maxAge = process.env.MAX_AGE === 'session' ? 'session' : Number(process.env.MAX_AGE);
  }
  if (process.env.STORE === 'mongoose') {
    const mongoose = require('mongoose');
    const MongooseStore = require('koa-session-mongoose');
    // FerretDB refuses TTL indexes (code 238); a real deployment keeps
    // mongoose's default and gets the store's updatedAt TTL index.
    mongoose.set('autoIndex', false);
    await mongoose.connect(process.env.MONGODB_URI, { dbName: process.env.MONGODB_DB });
    opts.store = new MongooseStore({ collection: 'sessions', connection: mongoose });
  }
  app.use(session(opts, app));

  app.use(async (ctx) => {
    switch (ctx.path) {
      case '/login': {
        // What a login handler stores: who, when, some nested state.
        ctx.session.user = ctx.query.user || 'alice';
        ctx.session.roles = ['admin', 'dev'];
        ctx.session.prefs = { theme: 'dark', tz: 'Europe/Paris', n: 3, ratio: 0.5, deep: { ok: true, none: null } };
        ctx.session.greeting = 'héllo wörld ✓';
        // Data the gateway must refuse: a padded session over its size cap, a
        // key holding a dot.
        if (ctx.query.pad) ctx.session.pad = 'x'.repeat(Number(ctx.query.pad));
        if (ctx.query.dotted) ctx.session['a.b'] = 1;
        if (process.env.STORE === 'mongoose') {
          ctx.session.loginAt = new Date(Date.UTC(2026, 10, 27, 1, 2, 3, 456));
        }
        ctx.body = { ok: true };
        return;
      }
      case '/regenerate':
        await ctx.session.regenerate();
        ctx.session.user = 'bob';
        ctx.body = { ok: true };
        return;
      case '/logout':
        ctx.session = null;
        ctx.body = { ok: true };
        return;
      case '/whoami':
        ctx.body = ctx.session.toJSON();
        return;
      default:
        ctx.status = 404;
    }
  });

  const server = app.listen(0, '127.0.0.1', () => {
    console.log('listening ' + server.address().port);
  });
}

main().catch((err) => {
  console.error(err && err.message);
  process.exit(1);
});
