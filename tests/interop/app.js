// The Node.js peer for the interop tests and benchmarks.
//
// How it works: express-session keeps a session id in a signed cookie,
//   <name>=s%3A<id>.<base64 HMAC-SHA256 of id, no '=' padding>
// (the ':' after 's' is percent-encoded by cookie.serialize), and the session
// data in a store keyed by that id. With MONGO_URL the store is connect-mongo
// with its defaults: collection "sessions", one document per session,
//   { _id: <id>, expires: <Date>, session: '<JSON string of the session>' }
// and a TTL index on `expires`. Without MONGO_URL it is express-session's
// MemoryStore (one process only; for tests that need no database).
//
// Two lifetimes: the cookie's Expires (set when the cookie is sent) and the
// document's `expires` (moved forward on every request by store.touch).
// Signing proves the id was issued with one of our secrets; it does not hide
// the id, and it says nothing about whether the session still exists.
//
// The Python service must be able to read and write the same cookie and the
// same documents, so this app keeps to the libraries' defaults wherever the
// brief does not name a setting.

'use strict';

const crypto = require('crypto');
const express = require('express');
const session = require('express-session');
// connect-mongo 6 is a dual ESM/CommonJS package; its CommonJS entry exports
// { MongoStore, default, ... }, so the class is a named export.
const { MongoStore } = require('connect-mongo');

// --- Configuration (from the environment, checked once at start) ---

class ConfigError extends Error {}

function readPort(env) {
  const raw = env.PORT === undefined ? '4000' : env.PORT;
  if (!/^\d+$/.test(raw) || Number(raw) > 65535) {
    throw new ConfigError(`PORT must be an integer from 0 to 65535 (0 picks a free port), got '${raw}'`);
  }
  return Number(raw);
}

function readSecrets(env) {
  const raw = env.SESSION_SECRET;
  if (raw === undefined || raw === '') {
    throw new ConfigError('SESSION_SECRET is required: one secret, or several separated by commas (the first signs, all verify)');
  }
  const secrets = raw.split(',');
  if (secrets.some((s) => s === '')) {
    throw new ConfigError(`SESSION_SECRET must not contain an empty secret, got '${raw}'`);
  }
  return secrets;
}

function readMaxAgeSeconds(env) {
  const raw = env.SESSION_MAX_AGE === undefined ? '25200' : env.SESSION_MAX_AGE; // 7 hours
  if (!/^\d+$/.test(raw) || Number(raw) === 0) {
    throw new ConfigError(`SESSION_MAX_AGE must be a positive whole number of seconds, got '${raw}'`);
  }
  return Number(raw);
}

function readBoolean(env, name, fallback) {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  if (/^(1|true|yes|on)$/i.test(raw)) return true;
  if (/^(0|false|no|off)$/i.test(raw)) return false;
  throw new ConfigError(`${name} must be true or false, got '${raw}'`);
}

function readConfig(env) {
  return Object.freeze({
    port: readPort(env),
    host: env.HOST || '127.0.0.1',
    mongoUrl: env.MONGO_URL || '', // '' means express-session's MemoryStore
    secrets: readSecrets(env),
    cookieName: env.SESSION_COOKIE_NAME || 'example.sid',
    maxAgeSeconds: readMaxAgeSeconds(env),
    saveUninitialized: readBoolean(env, 'SAVE_UNINITIALIZED', true),
    // TRANSFORM_ID=sha256: the store keys a digest of each id (the Python service's
    // SESSION_ID_AT_REST=sha256), so a copy of the collection holds no usable id.
    hashIds: readBoolean(env, 'TRANSFORM_ID_SHA256', false),
  });
}

// --- Session middleware ---

// connect-mongo's defaults: collection "sessions", database from the URL,
// ttl 14 days (used only when the cookie has no expiry), TTL index on
// `expires`, session stored as a JSON string. null means MemoryStore.
function makeStore(config) {
  if (!config.mongoUrl) return null;
  const options = { mongoUrl: config.mongoUrl };
  if (config.hashIds) {
    options.transformId = (sid) => crypto.createHash('sha256').update(sid).digest('hex');
  }
  return MongoStore.create(options);
}

function makeSessionOptions(config, store) {
  const options = {
    name: config.cookieName,
    secret: config.secrets, // an array: secrets[0] signs, every entry verifies
    resave: false,
    saveUninitialized: config.saveUninitialized,
    cookie: {
      maxAge: config.maxAgeSeconds * 1000, // express-session wants milliseconds
      httpOnly: true,
      secure: false, // plain http on loopback; a Secure cookie would never be sent
      sameSite: 'lax',
      path: '/',
    },
  };
  if (store) options.store = store; // else express-session makes a MemoryStore
  return options;
}

// --- Routes ---

// Keys a client may not set through POST /extra: the session's own
// properties and methods, and keys that would reach Object.prototype.
const RESERVED_SESSION_KEYS = new Set([
  'cookie', 'id', 'req',
  'touch', 'resetMaxAge', 'save', 'reload', 'destroy', 'regenerate',
  '__proto__', 'constructor', 'prototype',
]);

function isPlainObject(value) {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

// The session's data without its cookie, as a plain object.
function sessionData(sess) {
  const data = {};
  for (const [key, value] of Object.entries(sess)) {
    if (key !== 'cookie') data[key] = value;
  }
  return data;
}

function makeApp(config, store) {
  const app = express();
  app.use(express.json());
  app.use(express.urlencoded({ extended: false }));
  app.use(session(makeSessionOptions(config, store)));

  // Log in: remember the user in the session and answer once it is stored.
  app.post('/', (req, res, next) => {
    const name = req.body && req.body.name;
    if (typeof name !== 'string' || name === '') {
      res.status(400).json({ error: 'body must have a non-empty string "name"' });
      return;
    }
    req.session.user = { name, isLoggedIn: true };
    req.session.save((err) => {
      if (err) return next(err);
      res.status(200).json({ name });
    });
  });

  // Log out: delete the stored session, then tell the browser to drop the
  // cookie (same name and Path it was set with, so the browser matches it).
  app.post('/logout', (req, res, next) => {
    req.session.destroy((err) => {
      if (err) return next(err);
      res.clearCookie(config.cookieName, { path: '/', httpOnly: true, sameSite: 'lax' });
      res.status(200).end();
    });
  });

  app.get('/name', (req, res) => {
    if (!req.session.user) {
      res.status(404).json({ error: 'not logged in' });
      return;
    }
    res.status(200).json({ name: req.session.user.name });
  });

  // Test route: copy the body's top-level keys into the session and store it.
  app.post('/extra', (req, res, next) => {
    if (!isPlainObject(req.body)) {
      res.status(400).json({ error: 'body must be a JSON object' });
      return;
    }
    const reserved = Object.keys(req.body).filter((key) => RESERVED_SESSION_KEYS.has(key));
    if (reserved.length > 0) {
      res.status(400).json({ error: `reserved session keys: ${reserved.join(', ')}` });
      return;
    }
    Object.assign(req.session, req.body);
    req.session.save((err) => {
      if (err) return next(err);
      res.status(200).json(sessionData(req.session));
    });
  });

  // Test route: give this one session its own lifetime, as a "remember me" box
  // does (milliseconds; null: a browser-session cookie), and store it.
  app.post('/remember', (req, res, next) => {
    const ms = req.body && req.body.maxAge;
    if (!(ms === null || (Number.isInteger(ms) && ms > 0))) {
      res.status(400).json({ error: 'body must be {"maxAge": <positive milliseconds> | null}' });
      return;
    }
    req.session.cookie.maxAge = ms;
    req.session.save((err) => {
      if (err) return next(err);
      res.status(200).json({ maxAge: ms });
    });
  });

  // Test route: the session exactly as express-session holds it, cookie
  // included (cookie.expires as an ISO string, as it is stored).
  app.get('/session', (req, res) => {
    res.status(200).json(req.session);
  });

  // Errors: JSON 500. A store error after the response has been written
  // (express-session reports touch/save failures that way) is only logged.
  app.use((err, req, res, next) => {
    console.error(`ERROR ${req.method} ${req.originalUrl}: ${err && err.stack ? err.stack : err}`);
    if (res.headersSent) {
      if (!res.writableEnded) next(err);
      return;
    }
    res.status(err.status || 500).json({ error: err.expose ? err.message : 'internal error' });
  });

  return app;
}

// --- Start and stop ---

function main() {
  let config;
  try {
    config = readConfig(process.env);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    console.error(`CONFIG ERROR: ${err.message}`);
    process.exit(2);
  }

  const store = makeStore(config);
  const app = makeApp(config, store);

  function listen() {
    const server = app.listen(config.port, config.host, () => {
      const kind = store ? 'connect-mongo' : 'MemoryStore';
      console.log(`LISTENING ${server.address().port} (store: ${kind})`);
    });
    server.on('error', (err) => {
      console.error(`LISTEN ERROR: ${err.message}`);
      process.exit(1);
    });
    const stop = () => {
      server.close();
      server.closeAllConnections();
      Promise.resolve(store && store.close()).finally(() => process.exit(0));
    };
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
  }

  if (!store) {
    listen();
    return;
  }
  // Wait until connect-mongo has connected and created its TTL index, so that
  // LISTENING means the app can serve sessions; fail fast otherwise.
  store.length((err) => {
    if (err) {
      console.error(`STORE ERROR: cannot use MongoDB at MONGO_URL: ${err.message}`);
      process.exit(1);
    }
    listen();
  });
}

main();
