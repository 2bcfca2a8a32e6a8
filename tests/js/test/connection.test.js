'use strict';
// pusher-js connecting to sockudo: handshake, public subscriptions, and the
// refusals (4001/4003/4004/4007) as the official client sees them.

const { describe, test, before, after, afterEach } = require('node:test');
const assert = require('node:assert/strict');
const h = require('./helpers');

const T = { timeout: 20000 };

describe('pusher-js connection', () => {
  let server;
  const clients = [];
  const track = (p) => (clients.push(p), p);

  before(async () => {
    server = await h.startServer();
  });
  afterEach(() => {
    while (clients.length) clients.pop().disconnect();
  });
  after(async () => {
    const res = await server.stop();
    assert.equal(res.code, 0, `server exit ${JSON.stringify(res)}\n${server.logs()}`);
  });

  test('connects: state connected, socket_id looks like \\d+.\\d+', T, async () => {
    const p = track(h.client(server.port));
    const states = [p.connection.state];
    p.connection.bind('state_change', ({ current }) => states.push(current));
    await h.waitForState(p, 'connected');
    assert.match(p.connection.socket_id, /^\d+\.\d+$/);
    assert.deepEqual(states, ['connecting', 'connected']);
  });

  test('subscribes to a public channel and receives SDK-triggered events (string and object data)', T, async () => {
    const p = track(await h.connectedClient(server.port));
    const ch = await h.subscribe(p, 'public-news');
    assert.equal(ch.subscribed, true);
    const api = h.sdk(server.port);

    const gotString = h.once(ch, 'as-string');
    const res = await api.trigger('public-news', 'as-string', 'hello world');
    assert.equal(res.status, 200);
    assert.deepEqual(await res.json(), {});
    assert.equal(await gotString, 'hello world');

    const gotObject = h.once(ch, 'as-object');
    await api.trigger('public-news', 'as-object', { n: 1, nested: { list: [1, 'two', null] }, u: 'é✓' });
    assert.deepEqual(await gotObject, { n: 1, nested: { list: [1, 'two', null] }, u: 'é✓' });
  });

  test('pusher-js keep-alive: pings answered with pongs, so the connection is kept', T, async () => {
    // pusher-js pings after activityTimeout of silence and reconnects if no
    // pusher:pong arrives within pongTimeout.
    const p = track(await h.connectedClient(server.port, h.APP.key, { activityTimeout: 200, pongTimeout: 1000 }));
    const id = p.connection.socket_id;
    const states = [];
    p.connection.bind('state_change', ({ current }) => states.push(current));
    // Count pings sent / pongs seen on pusher-js's internal Connection object.
    let pings = 0;
    let pongs = 0;
    const conn = p.connection.connection;
    const ping = conn.ping.bind(conn);
    conn.ping = () => (pings++, ping());
    conn.bind('pong', () => pongs++);
    await h.sleep(2500);
    assert.deepEqual(states, [], `state changed: ${states}`);
    assert.equal(p.connection.socket_id, id);
    assert.ok(pings >= 3, `only ${pings} pings sent`);
    assert.ok(pongs >= pings - 1, `${pings} pings but ${pongs} pongs`);
  });

  test('raw pusher:ping gets pusher:pong', T, async () => {
    const c = await h.rawWs(server.port);
    try {
      const est = await c.next((m) => m.event === 'pusher:connection_established');
      assert.equal(typeof est.parsedData.activity_timeout, 'number');
      c.ws.send(JSON.stringify({ event: 'pusher:ping', data: {} }));
      await c.next((m) => m.event === 'pusher:pong');
    } finally {
      c.ws.close();
    }
  });

  test('unsubscribe stops delivery; resubscribe resumes it', T, async () => {
    const p = track(await h.connectedClient(server.port));
    const ch = await h.subscribe(p, 'toggle');
    const got = h.collect(ch, 'e');
    const api = h.sdk(server.port);
    await api.trigger('toggle', 'e', 1);
    await h.until(() => got.length === 1, 5000, 'first event');
    p.unsubscribe('toggle');
    // A round trip on the same socket (subscribe + succeeded) proves the unsubscribe was processed.
    await h.subscribe(p, 'other');
    await api.trigger('toggle', 'e', 2);
    await h.sleep(300);
    assert.deepEqual(got, [1]);
    const ch2 = await h.subscribe(p, 'toggle');
    const got2 = h.once(ch2, 'e');
    await api.trigger('toggle', 'e', 3);
    assert.equal(await got2, 3);
  });
});

/** Connect pusher-js with `key` and observe a refusal: errors, states, attempts. */
async function observeRefusal(port, key) {
  const p = h.client(port, key);
  const errors = [];
  // pusher-js moves to 'connecting' inside its constructor, before we can bind.
  const states = [p.connection.state];
  p.connection.bind('error', (e) => errors.push(e));
  p.connection.bind('state_change', ({ current }) => states.push(current));
  try {
    await h.until(() => errors.length > 0, 5000, 'pusher-js error event');
    // Give pusher-js time to (wrongly) retry: its backoff/retry would be 0-1 s.
    await h.sleep(2000);
    return { errors, states, finalState: p.connection.state };
  } finally {
    p.disconnect();
  }
}

function refusalCode(err) {
  // pusher-js reports handshake refusals as
  // { type: 'WebSocketError', error: { type: 'PusherError', data: { code, message } } }
  return err?.error?.data?.code ?? err?.data?.code;
}

describe('refusals', () => {
  let server;
  before(async () => {
    server = await h.startServer({
      apps: [
        ...h.DEFAULT_APPS,
        { id: '125', key: 'small-key', secret: 's3', enabled: true, max_connections: 3 },
      ],
    });
  });
  after(async () => {
    const res = await server.stop();
    assert.equal(res.code, 0, `server exit ${JSON.stringify(res)}\n${server.logs()}`);
  });

  test('unknown key: pusher-js gets 4001 and does not reconnect', T, async () => {
    const { errors, states, finalState } = await observeRefusal(server.port, 'no-such-key');
    assert.equal(errors.length, 1, JSON.stringify(errors));
    assert.equal(refusalCode(errors[0]), 4001, JSON.stringify(errors[0]));
    // 'refused' close action: pusher-js disconnects and never goes back to connecting.
    assert.equal(finalState, 'disconnected');
    assert.equal(states.filter((s) => s === 'connecting').length, 1, `states: ${states}`);
    assert.ok(!states.includes('connected'), `states: ${states}`);
  });

  test('unknown key over raw ws: pusher:error 4001 then close 4001', T, async () => {
    const c = await h.rawWs(server.port, 'no-such-key');
    const err = await c.next((m) => m.event === 'pusher:error');
    assert.equal(err.parsedData?.code ?? err.data?.code, 4001, JSON.stringify(err));
    const { code } = await c.closed;
    assert.equal(code, 4001);
    assert.ok(!c.messages.some((m) => m.event === 'pusher:connection_established'));
  });

  test('disabled app: pusher-js gets 4003 and does not reconnect', T, async () => {
    const { errors, states, finalState } = await observeRefusal(server.port, h.OFF_APP.key);
    assert.equal(errors.length, 1, JSON.stringify(errors));
    assert.equal(refusalCode(errors[0]), 4003, JSON.stringify(errors[0]));
    assert.equal(finalState, 'disconnected');
    assert.equal(states.filter((s) => s === 'connecting').length, 1, `states: ${states}`);
  });

  test('protocol=99 over raw ws: close code 4007', T, async () => {
    const c = await h.rawWs(server.port, h.APP.key, 'protocol=99&client=js&version=8.0.0');
    const { code } = await c.closed;
    assert.equal(code, 4007);
    const err = c.messages.find((m) => m.event === 'pusher:error');
    assert.ok(err, `expected a pusher:error before the close, got ${JSON.stringify(c.messages)}`);
    assert.equal(err.parsedData?.code ?? err.data?.code, 4007);
    assert.ok(!c.messages.some((m) => m.event === 'pusher:connection_established'));
  });

  test('over max_connections: the extra pusher-js client gets 4004, the others stay connected', T, async () => {
    const ok = [];
    try {
      for (let i = 0; i < 3; i++) ok.push(await h.connectedClient(server.port, 'small-key'));
      // On a cluster each node announces its connection count over the bus, so a connect racing the last
      // announcement by less than one bus hop can be admitted (docs/scaling.md): let the count arrive first.
      if (process.env.SOCKUDO_TEST_CLUSTER) await h.sleep(300);
      const { errors, states, finalState } = await observeRefusal(server.port, 'small-key');
      assert.equal(errors.length, 1, JSON.stringify(errors));
      assert.equal(refusalCode(errors[0]), 4004, JSON.stringify(errors[0]));
      assert.equal(finalState, 'disconnected');
      assert.ok(!states.includes('connected'), `states: ${states}`);
      for (const p of ok) assert.equal(p.connection.state, 'connected');

      // Freeing a slot lets a new client in.
      ok.pop().disconnect();
      let admitted;
      for (let i = 0; i < 20 && !admitted; i++) {
        await h.sleep(100);
        const p = h.client(server.port, 'small-key');
        try {
          await h.waitForState(p, 'connected', 1000);
          admitted = p;
        } catch (_) {
          p.disconnect();
        }
      }
      assert.ok(admitted, 'a slot freed by a disconnect was not given back');
      ok.push(admitted);
    } finally {
      for (const p of ok) p.disconnect();
    }
  });
});
