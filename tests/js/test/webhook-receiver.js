'use strict';
// A real webhook receiver for the tests: an HTTP server on 127.0.0.1 (port 0) that records every request
// (method, path, headers, raw body) and checks each one with the official `pusher` Node SDK
// (`pusher.webhook({ headers, rawBody }).isValid()`, which also insists on `content-type: application/json`
// exactly), then reads it with getEvents() / getTime(). Answers can be scripted per request (e.g. 500 for the
// first N requests) to exercise retries.
//
// Every request that is not a valid Pusher webhook is kept in `problems`; waitFor() rejects as soon as one
// arrives and assertAllValid() fails the test with every problem listed, so no test can pass with a bad
// webhook in it.

const http = require('node:http');
const PusherServer = require('pusher');

/** Largest accepted distance between a webhook's `time_ms` and the receiver's clock (the Python SDK's 300 s). */
const MAX_SKEW_MS = 300 * 1000;

/**
 * Start a receiver that validates webhooks of `app` ({ id, key, secret }).
 *
 * `respond(req, n)` picks the answer to the n-th request (0-based, counted per path) and returns a status code
 * or { status, body, delayMs }; default 200. The recorded request is passed in (it is already validated).
 *
 * Resolves to the receiver; see the methods below.
 */
async function startReceiver({ app, respond = () => 200 } = {}) {
  if (!app) throw new Error('startReceiver needs { app: { id, key, secret } }');
  const pusher = new PusherServer({ appId: app.id, key: app.key, secret: app.secret });
  const requests = [];
  const problems = [];
  const perPath = new Map();
  const waiters = new Set();
  const notify = () => {
    for (const w of [...waiters]) w();
  };

  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const rawBody = Buffer.concat(chunks).toString('utf8');
      const urlPath = req.url;
      const n = perPath.get(urlPath) ?? 0;
      perPath.set(urlPath, n + 1);
      const rec = {
        index: requests.length,
        n,
        method: req.method,
        path: urlPath,
        headers: req.headers, // lower-case keys, as pusher.webhook() wants them
        rawBody,
        receivedAt: Date.now(),
        valid: false,
        events: [],
        time: null,
        status: null,
      };
      const errs = [];
      if (req.method !== 'POST') errs.push(`method ${req.method}, want POST`);
      if (req.headers['content-type'] !== 'application/json') {
        errs.push(`content-type ${JSON.stringify(req.headers['content-type'])}, want exactly "application/json"`);
      }
      if (req.headers['x-pusher-key'] !== app.key) {
        errs.push(`x-pusher-key ${JSON.stringify(req.headers['x-pusher-key'])}, want ${JSON.stringify(app.key)}`);
      }
      const hook = pusher.webhook({ headers: req.headers, rawBody });
      rec.valid = hook.isValid();
      if (!rec.valid) {
        errs.push(`pusher SDK: webhook.isValid() is false (signature ${req.headers['x-pusher-signature']})`);
      } else {
        rec.events = hook.getEvents();
        rec.time = hook.getTime();
        const data = hook.getData();
        if (typeof data.time_ms !== 'number' || !Number.isInteger(data.time_ms)) {
          errs.push(`time_ms ${JSON.stringify(data.time_ms)} is not an integer`);
        } else if (Math.abs(data.time_ms - rec.receivedAt) > MAX_SKEW_MS) {
          errs.push(`time_ms ${data.time_ms} is more than 300 s from the receiver's clock ${rec.receivedAt}`);
        }
        if (!Array.isArray(rec.events) || rec.events.length === 0) {
          errs.push(`events ${JSON.stringify(rec.events)} is not a non-empty array`);
          rec.events = Array.isArray(rec.events) ? rec.events : [];
        }
        const keys = Object.keys(data).sort().join(',');
        if (keys !== 'events,time_ms') errs.push(`body keys ${keys}, want events,time_ms`);
        for (const e of rec.events) {
          if (typeof e?.name !== 'string' || typeof e?.channel !== 'string') {
            errs.push(`event without string name/channel: ${JSON.stringify(e)}`);
          }
        }
      }
      if (errs.length) {
        rec.valid = false;
        problems.push({ path: rec.path, request: describe(rec), errors: errs });
      }

      let answer = 200;
      try {
        answer = respond(rec, n) ?? 200;
      } catch (e) {
        problems.push({ path: rec.path, request: describe(rec), errors: [`respond() threw: ${e.stack}`] });
      }
      if (typeof answer === 'number') answer = { status: answer };
      rec.status = answer.status;
      requests.push(rec);
      notify();
      const send = () => {
        res.writeHead(answer.status, { 'content-type': 'text/plain', connection: 'close' });
        res.end(answer.body ?? (answer.status < 300 ? 'ok' : 'scripted failure'));
      };
      if (answer.delayMs) setTimeout(send, answer.delayMs);
      else send();
    });
  });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const { port } = server.address();

  const rx = {
    port,
    requests,
    problems,

    /** Webhook URL for `urlPath` on this receiver. */
    url: (urlPath = '/webhook') => `http://127.0.0.1:${port}${urlPath}`,

    /** Recorded requests, optionally only those to `urlPath`. */
    requestsTo: (urlPath) => requests.filter((r) => urlPath === undefined || r.path === urlPath),

    /**
     * Events of the valid requests (to `urlPath` if given), in arrival order, each as
     * { ...event } with a non-enumerable `_req` pointing at its request. With `{ accepted: true }` only
     * requests answered 2xx count (what the server may consider delivered).
     */
    events(urlPath, { accepted = false } = {}) {
      const out = [];
      for (const r of rx.requestsTo(urlPath)) {
        if (!r.valid || (accepted && !(r.status >= 200 && r.status < 300))) continue;
        for (const e of r.events) {
          const copy = { ...e };
          Object.defineProperty(copy, '_req', { value: r, enumerable: false });
          out.push(copy);
        }
      }
      return out;
    },

    /** Events named `name` on `channel` (either may be undefined = any) from requests to `urlPath`. */
    eventsOf(urlPath, name, channel) {
      return rx.events(urlPath).filter((e) => (name === undefined || e.name === name) &&
        (channel === undefined || e.channel === channel));
    },

    /**
     * Resolve with the first truthy value of `pred()` (re-checked on every request), or reject after
     * `timeoutMs`. Rejects at once if an invalid webhook arrived. `what` names the condition in errors.
     */
    waitFor(pred, timeoutMs = 5000, what = 'condition') {
      return new Promise((resolve, reject) => {
        let timer = null;
        const check = () => {
          if (problems.length) {
            finish();
            reject(new Error(`invalid webhook(s) while waiting for ${what}:\n${rx.problemReport()}`));
            return;
          }
          let v;
          try {
            v = pred();
          } catch (e) {
            finish();
            reject(e);
            return;
          }
          if (v) {
            finish();
            resolve(v);
          }
        };
        const finish = () => {
          waiters.delete(check);
          clearTimeout(timer);
        };
        timer = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}; received:\n${rx.report()}`));
        }, timeoutMs);
        waiters.add(check);
        check();
      });
    },

    /** Wait until `count` events match `filter` (an event predicate) at `urlPath`; resolves with them. */
    waitForEvents(urlPath, filter, count = 1, timeoutMs = 5000, what = undefined) {
      return rx.waitFor(() => {
        const got = rx.events(urlPath).filter(filter);
        return got.length >= count ? got : null;
      }, timeoutMs, what ?? `${count} event(s) at ${urlPath ?? 'any path'} matching ${filter}`);
    },

    /** Wait for one event `name` on `channel` at `urlPath`; resolves with it. */
    async waitForEvent(urlPath, name, channel, timeoutMs = 5000) {
      const [e] = await rx.waitForEvents(urlPath, (x) => x.name === name && x.channel === channel, 1, timeoutMs,
        `${name} on ${channel} at ${urlPath ?? 'any path'}`);
      return e;
    },

    /** Throw (listing them) if any request was not a valid Pusher webhook. */
    assertAllValid() {
      if (problems.length) throw new Error(`invalid webhook(s):\n${rx.problemReport()}`);
    },

    problemReport: () => problems.map((p) => `  ${p.request}\n    - ${p.errors.join('\n    - ')}`).join('\n'),

    /** Everything received, one line a request, for failure messages. */
    report: () => (requests.length ? requests.map(describe).join('\n') : '  (nothing)'),

    close: () => new Promise((resolve) => {
      server.closeAllConnections?.();
      server.close(() => resolve());
    }),
  };
  return rx;
}

function describe(r) {
  const t = r.receivedAt ? new Date(r.receivedAt).toISOString().slice(11, 23) : '?';
  return `  #${r.index} ${t} ${r.method} ${r.path} -> ${r.status ?? '-'} ${r.rawBody}`;
}

/** A `respond` that answers `status` to the first `n` requests of each path in `paths` (all paths if omitted). */
function failFirst(n, status = 500, paths = undefined) {
  return (req, i) => ((!paths || paths.includes(req.path)) && i < n ? status : 200);
}

module.exports = { startReceiver, failFirst, MAX_SKEW_MS };
