'use strict';
// Shared helpers for the SDK conformance tests: spawn/stop a real sockudo
// binary, build clients with the official SDKs (pusher-js, pusher), and a few
// small async utilities.

const { spawn } = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const http = require('node:http');
const https = require('node:https');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');

const PusherJS = require('pusher-js'); // Node build (dist/node), bundles faye-websocket
const PusherServer = require('pusher');
const WebSocket = require('ws');
const { mirrorApps } = require('./app-db');

const SOCKUDO_BIN = process.env.SOCKUDO_BIN
  ? path.resolve(process.env.SOCKUDO_BIN)
  : path.resolve(__dirname, '..', '..', '..', 'target', 'debug', 'sockudo');

// Default apps: numeric ids because the Node `pusher` SDK wants them.
const APP = { id: '123', key: 'test-key', secret: 'test-secret' };
const OFF_APP = { id: '124', key: 'off-key', secret: 's2' };
const DEFAULT_APPS = [
  {
    id: APP.id,
    key: APP.key,
    secret: APP.secret,
    enabled: true,
    enable_client_messages: true,
    max_connections: 50,
  },
  { id: OFF_APP.id, key: OFF_APP.key, secret: OFF_APP.secret, enabled: false },
];

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/** GET over plain HTTP, or over TLS trusting the PEM `ca` (for localhost) when given. */
function httpGet(port, urlPath, ca) {
  return new Promise((resolve, reject) => {
    const get = ca ? https.get : http.get;
    const target = ca
      ? { host: '127.0.0.1', servername: 'localhost', ca, port, path: urlPath, agent: false }
      : { host: '127.0.0.1', port, path: urlPath, agent: false };
    const req = get(target, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.setTimeout(2000, () => req.destroy(new Error('timeout')));
  });
}

/** Raw HTTP request on a fresh TCP connection (agent:false), so each call may land on any shard. */
function httpRequest(port, method, urlPath, body, headers = {}) {
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: '127.0.0.1',
        port,
        method,
        path: urlPath,
        agent: false,
        headers: body !== undefined
          ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), ...headers }
          : headers,
      },
      (res) => {
        let data = '';
        res.setEncoding('utf8');
        res.on('data', (c) => (data += c));
        res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: data }));
      },
    );
    req.on('error', reject);
    req.setTimeout(5000, () => req.destroy(new Error('timeout')));
    if (body !== undefined) req.write(body);
    req.end();
  });
}

async function waitForBinary() {
  // The binary is rebuilt by others from time to time; wait a little if it is missing.
  for (let i = 0; i < 60; i++) {
    if (fs.existsSync(SOCKUDO_BIN)) return;
    await sleep(500);
  }
  throw new Error(`sockudo binary not found at ${SOCKUDO_BIN} (set SOCKUDO_BIN)`);
}

/**
 * Start a sockudo server with the given apps. `config` adds top-level sections to the config file (e.g.
 * `{ webhooks: { batching: {...} } }`), `env` adds or overrides environment variables. Returns
 * { port, proc, stop(), logs() }. stop() sends SIGTERM and resolves to
 * { code, signal }.
 *
 * With SOCKUDO_TEST_CLUSTER=redis|redis-cluster|nats the "server" is two sockudo processes sharing the port
 * (SO_REUSEPORT) and joined through that bus (addresses from the SOCKUDO_TEST_* variables the service scripts
 * export): every connection, WebSocket or REST, lands on either node, so the whole suite runs against a
 * cluster. stop() stops both and reports the first non-zero exit.
 *
 * With TLS on (SSL_* in `env`), pass the test CA's PEM as `ca`: the readiness probe then speaks https.
 */
async function startServer(opts = {}) {
  const driver = process.env.SOCKUDO_TEST_CLUSTER;
  if (!driver) return startNode(opts);
  const port = await freePort();
  const prefix = `js${process.pid}-${port}:`;
  const clusterEnv = {
    ADAPTER_DRIVER: driver,
    REDIS_PREFIX: prefix,
    NATS_PREFIX: prefix,
    CLUSTER_HEALTH_HEARTBEAT_INTERVAL_MS: '500',
    RUST_LOG: 'warn,sockudo=info,sockudo_io_shard::cluster=info',
  };
  const need = (name) => {
    const v = process.env[name];
    if (!v) throw new Error(`SOCKUDO_TEST_CLUSTER=${driver} needs ${name} (scripts/services/*.sh export it)`);
    return v;
  };
  if (driver === 'redis') clusterEnv.REDIS_URL = need('SOCKUDO_TEST_REDIS_URL');
  else if (driver === 'redis-cluster') clusterEnv.REDIS_CLUSTER_NODES = need('SOCKUDO_TEST_REDIS_CLUSTER_NODES');
  else if (driver === 'nats') clusterEnv.NATS_SERVERS = need('SOCKUDO_TEST_NATS_URL');
  else throw new Error(`unknown SOCKUDO_TEST_CLUSTER driver ${driver}`);
  // The Redis Cluster prefix has no variable: give it through the config file.
  const config = { ...(opts.config || {}) };
  config.adapter = { ...(config.adapter || {}), cluster: { prefix } };
  const env = { ...clusterEnv, ...(opts.env || {}) };
  const a = await startNode({ ...opts, config, env, port });
  const b = await startNode({ ...opts, config, env, port });
  // Linked when each has heard the other.
  const deadline = Date.now() + 15000;
  const linked = (n) => n.logs().includes('cluster node joined') && n.logs().includes('sockudo ready');
  while (!(linked(a) && linked(b))) {
    if (Date.now() > deadline) {
      await Promise.all([a.stop(), b.stop()]);
      throw new Error(`cluster nodes never joined:\n${a.logs()}\n${b.logs()}`);
    }
    await sleep(50);
  }
  const stop = async () => {
    const [ra, rb] = await Promise.all([a.stop(), b.stop()]);
    return ra.code !== 0 || ra.signal ? ra : rb;
  };
  return { port, proc: a.proc, stop, logs: () => `${a.logs()}\n--- second node ---\n${b.logs()}` };
}

async function startNode({ apps = DEFAULT_APPS, shards = 2, config = {}, env = {}, port, ca } = {}) {
  await waitForBinary();
  port = port || (await freePort());
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sockudo-js-'));
  const configPath = path.join(dir, 'config.json');
  fs.writeFileSync(configPath, JSON.stringify({ ...config, app_manager: { array: { apps } } }, null, 2));
  // SOCKUDO_TEST_APP_DRIVER: the same apps, read from a database instead (see app-db.js).
  const dbEnv = await mirrorApps(apps);

  const proc = spawn(SOCKUDO_BIN, ['--config', configPath], {
    env: {
      ...process.env,
      PORT: String(port),
      HOST: '127.0.0.1',
      SHARDS: String(shards),
      METRICS_ENABLED: 'false',
      RUST_LOG: 'warn',
      // No drain period: stop() closes with 4200 at once, as the tests expect (draining is tested in Rust).
      SHUTDOWN_GRACE_PERIOD: '0',
      ...(dbEnv || {}),
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  proc.stdout.on('data', (c) => (output += c));
  proc.stderr.on('data', (c) => (output += c));
  const exited = new Promise((resolve) => proc.on('exit', (code, signal) => resolve({ code, signal })));
  let hasExited = false;
  exited.then(() => (hasExited = true));

  const deadline = Date.now() + 15000;
  for (;;) {
    if (hasExited) {
      throw new Error(`sockudo exited during startup:\n${output}`);
    }
    try {
      const r = await httpGet(port, '/up', ca);
      if (r.status === 200) break;
    } catch (_) {
      /* not up yet */
    }
    if (Date.now() > deadline) {
      proc.kill('SIGKILL');
      throw new Error(`sockudo did not come up on port ${port}:\n${output}`);
    }
    await sleep(50);
  }

  let stopped = null;
  const stop = () => {
    if (!stopped) {
      stopped = (async () => {
        if (!hasExited) proc.kill('SIGTERM');
        const t = setTimeout(() => proc.kill('SIGKILL'), 5000);
        const res = await exited;
        clearTimeout(t);
        fs.rmSync(dir, { recursive: true, force: true });
        return res;
      })();
    }
    return stopped;
  };
  return { port, proc, stop, logs: () => output };
}

/** A pusher (server SDK) instance pointed at the test server. */
function sdk(port, app = APP, extra = {}) {
  return new PusherServer({
    ...extra,
    appId: app.id,
    key: app.key,
    secret: app.secret,
    host: '127.0.0.1',
    port: String(port),
    useTLS: false,
    timeout: 5000,
  });
}

/**
 * A pusher-js client (not yet connected unless it autoconnects; pusher-js
 * connects in its constructor). extra options are merged in.
 */
function client(port, key = APP.key, extra = {}) {
  return new PusherJS(key, {
    wsHost: '127.0.0.1',
    wsPort: port,
    forceTLS: false,
    enabledTransports: ['ws'],
    disabledTransports: ['xhr_streaming', 'xhr_polling', 'sockjs'],
    cluster: 'x',
    enableStats: false,
    ...extra,
  });
}

/** Resolve when a pusher-js client reaches `state` (or reject after ms). */
function waitForState(pusher, state, ms = 5000) {
  return new Promise((resolve, reject) => {
    if (pusher.connection.state === state) return resolve();
    const t = setTimeout(() => {
      pusher.connection.unbind('state_change', onChange);
      reject(new Error(`timed out waiting for state ${state} (now ${pusher.connection.state})`));
    }, ms);
    const onChange = ({ current }) => {
      if (current === state) {
        clearTimeout(t);
        pusher.connection.unbind('state_change', onChange);
        resolve();
      }
    };
    pusher.connection.bind('state_change', onChange);
  });
}

/** Connected pusher-js client. */
async function connectedClient(port, key = APP.key, extra = {}) {
  const p = client(port, key, extra);
  try {
    await waitForState(p, 'connected');
  } catch (e) {
    p.disconnect();
    throw e;
  }
  return p;
}

/** Resolve on the next `event` bound on a pusher-js channel/connection (anything with bind/unbind). */
function once(bindable, event, ms = 5000) {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => {
      bindable.unbind(event, handler);
      reject(new Error(`timed out waiting for ${event}`));
    }, ms);
    const handler = (data) => {
      clearTimeout(t);
      bindable.unbind(event, handler);
      resolve(data);
    };
    bindable.bind(event, handler);
  });
}

/** Subscribe a pusher-js client and wait for pusher:subscription_succeeded. */
async function subscribe(pusher, channelName, ms = 5000) {
  const ch = pusher.subscribe(channelName);
  if (ch.subscribed) return ch;
  await Promise.race([
    once(ch, 'pusher:subscription_succeeded', ms),
    once(ch, 'pusher:subscription_error', ms).then((e) => {
      throw new Error(`subscription_error on ${channelName}: ${JSON.stringify(e)}`);
    }),
  ]);
  return ch;
}

/** Collect events named `event` on a channel into an array. */
function collect(channel, event) {
  const got = [];
  channel.bind(event, (data) => got.push(data));
  return got;
}

/** Poll until pred() is truthy. */
async function until(pred, ms = 5000, what = 'condition') {
  const deadline = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

/**
 * Raw `ws` connection to /app/<key>. Resolves with
 * { ws, shard, messages, next(pred), closed } once the upgrade is done.
 * `closed` resolves with { code, reason }.
 */
function rawWs(port, key = APP.key, query = 'protocol=7&client=js&version=8.0.0') {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/app/${key}?${query}`);
    const messages = [];
    const waiters = [];
    let shard = null;
    let closeInfo = null;
    const closed = new Promise((res) => ws.on('close', (code, reason) => {
      closeInfo = { code, reason: reason.toString() };
      res(closeInfo);
    }));
    ws.on('upgrade', (res) => {
      shard = res.headers['x-sockudo-shard'];
    });
    ws.on('message', (data) => {
      let msg;
      try {
        msg = JSON.parse(data.toString());
        if (typeof msg.data === 'string') {
          try { msg.parsedData = JSON.parse(msg.data); } catch (_) { /* plain string */ }
        }
      } catch (_) {
        msg = { raw: data.toString() };
      }
      messages.push(msg);
      for (const w of [...waiters]) w();
    });
    ws.on('error', (e) => {
      if (ws.readyState === WebSocket.CONNECTING) reject(e);
    });
    ws.on('open', () => {
      const next = (pred, ms = 5000) => new Promise((res, rej) => {
        let idx = 0;
        const check = () => {
          for (; idx < messages.length; idx++) {
            if (pred(messages[idx])) {
              waiters.splice(waiters.indexOf(check), 1);
              clearTimeout(t);
              res(messages[idx]);
              return;
            }
          }
        };
        const t = setTimeout(() => {
          waiters.splice(waiters.indexOf(check), 1);
          rej(new Error(`timed out waiting for message; got ${JSON.stringify(messages)}`));
        }, ms);
        waiters.push(check);
        check();
      });
      resolve({ ws, shard, messages, next, closed, closeInfo: () => closeInfo });
    });
  });
}

/** Hand-signed REST request, per Pusher's REST auth. Returns { status, headers, body }. */
function signedPost(port, app, urlPath, bodyObj, { timestamp, secret } = {}) {
  const body = JSON.stringify(bodyObj);
  const params = {
    auth_key: app.key,
    auth_timestamp: String(timestamp ?? Math.floor(Date.now() / 1000)),
    auth_version: '1.0',
    body_md5: crypto.createHash('md5').update(body).digest('hex'),
  };
  const qs = Object.keys(params).sort().map((k) => `${k}=${params[k]}`).join('&');
  const toSign = `POST\n${urlPath}\n${qs}`;
  const sig = crypto.createHmac('sha256', secret ?? app.secret).update(toSign).digest('hex');
  return httpRequest(port, 'POST', `${urlPath}?${qs}&auth_signature=${sig}`, body);
}

module.exports = {
  SOCKUDO_BIN,
  APP,
  OFF_APP,
  DEFAULT_APPS,
  PusherJS,
  PusherServer,
  WebSocket,
  sleep,
  freePort,
  httpGet,
  httpRequest,
  startServer,
  sdk,
  client,
  connectedClient,
  waitForState,
  once,
  subscribe,
  collect,
  until,
  rawWs,
  signedPost,
};
