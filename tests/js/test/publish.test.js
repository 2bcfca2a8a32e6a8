'use strict';
// Publishing with the official `pusher` Node SDK and receiving with pusher-js:
// fan-out, socket_id exclusion, batches, multi-channel triggers, and the REST
// errors as the SDK reports them.

const { describe, test, before, after, afterEach } = require('node:test');
const assert = require('node:assert/strict');
const h = require('./helpers');

const T = { timeout: 20000 };

describe('publish with the pusher SDK', () => {
  let server;
  let api;
  const clients = [];
  const connect = async () => {
    const p = await h.connectedClient(server.port);
    clients.push(p);
    return p;
  };

  before(async () => {
    server = await h.startServer();
    api = h.sdk(server.port);
  });
  afterEach(() => {
    while (clients.length) clients.pop().disconnect();
  });
  after(async () => {
    const res = await server.stop();
    assert.equal(res.code, 0, `server exit ${JSON.stringify(res)}\n${server.logs()}`);
  });

  test('several clients on one channel all receive', T, async () => {
    const ps = await Promise.all([connect(), connect(), connect(), connect()]);
    const chans = await Promise.all(ps.map((p) => h.subscribe(p, 'fanout')));
    const got = chans.map((ch) => h.collect(ch, 'tick'));
    for (let i = 0; i < 5; i++) await api.trigger('fanout', 'tick', { i });
    await h.until(() => got.every((g) => g.length === 5), 5000, 'all clients got 5 events');
    for (const g of got) assert.deepEqual(g, [0, 1, 2, 3, 4].map((i) => ({ i })));
  });

  test('trigger with socket_id excludes that client only', T, async () => {
    const [a, b, c] = await Promise.all([connect(), connect(), connect()]);
    const [ca, cb, cc] = await Promise.all([a, b, c].map((p) => h.subscribe(p, 'excl')));
    const ga = h.collect(ca, 'msg');
    const gb = h.collect(cb, 'msg');
    const gc = h.collect(cc, 'msg');
    const res = await api.trigger('excl', 'msg', 'not for a', { socket_id: a.connection.socket_id });
    assert.equal(res.status, 200);
    await h.until(() => gb.length === 1 && gc.length === 1, 5000, 'b and c receive');
    await h.sleep(300);
    assert.deepEqual(ga, [], 'the excluded socket received the event');
    assert.deepEqual(gb, ['not for a']);
    assert.deepEqual(gc, ['not for a']);

    // Without socket_id, a gets it too (the exclusion is per request).
    await api.trigger('excl', 'msg', 'for all');
    await h.until(() => ga.length === 1, 5000, 'a receives an unexcluded event');
    assert.deepEqual(ga, ['for all']);
  });

  test('triggerBatch delivers every event of the batch', T, async () => {
    const p = await connect();
    const [c1, c2] = await Promise.all([h.subscribe(p, 'batch-1'), h.subscribe(p, 'batch-2')]);
    const got1 = h.collect(c1, 'b');
    const got2 = h.collect(c2, 'b2');
    const res = await api.triggerBatch([
      { channel: 'batch-1', name: 'b', data: { first: true } },
      { channel: 'batch-2', name: 'b2', data: 'second' },
      { channel: 'batch-1', name: 'b', data: { third: 3 } },
    ]);
    assert.equal(res.status, 200);
    assert.deepEqual(await res.json(), {});
    await h.until(() => got1.length === 2 && got2.length === 1, 5000, 'batch events');
    assert.deepEqual(got1, [{ first: true }, { third: 3 }]);
    assert.deepEqual(got2, ['second']);
  });

  test('trigger to several channels at once', T, async () => {
    const [p, q] = await Promise.all([connect(), connect()]);
    const chans = await Promise.all([
      h.subscribe(p, 'multi-a'),
      h.subscribe(p, 'multi-b'),
      h.subscribe(q, 'multi-c'),
      h.subscribe(q, 'multi-unrelated'),
    ]);
    const got = chans.map((ch) => h.collect(ch, 'm'));
    const res = await api.trigger(['multi-a', 'multi-b', 'multi-c'], 'm', { hello: 'all' });
    assert.equal(res.status, 200);
    await h.until(() => got[0].length && got[1].length && got[2].length, 5000, 'three channels');
    await h.sleep(200);
    assert.deepEqual(got.slice(0, 3), [[{ hello: 'all' }], [{ hello: 'all' }], [{ hello: 'all' }]]);
    assert.deepEqual(got[3], []);
  });

  test('trigger to a channel with no subscribers succeeds with {}', T, async () => {
    const res = await api.trigger('nobody-here', 'e', 'x');
    assert.equal(res.status, 200);
    assert.deepEqual(await res.json(), {});
  });
});

describe('REST errors as the pusher SDK sees them', () => {
  let server;
  before(async () => {
    server = await h.startServer();
  });
  after(async () => {
    const res = await server.stop();
    assert.equal(res.code, 0, `server exit ${JSON.stringify(res)}\n${server.logs()}`);
  });

  /** Expect promise to reject with the SDK's RequestError of `status`; returns the error. */
  async function rejectsWith(promise, status) {
    let err;
    try {
      const res = await promise;
      assert.fail(`expected ${status}, got ${res.status} ${await res.text()}`);
    } catch (e) {
      err = e;
    }
    assert.ok(err instanceof h.PusherServer.RequestError, `not a RequestError: ${err && err.stack}`);
    assert.equal(err.status, status, `status ${err.status}, body ${err.body}`);
    return err;
  }

  function jsonError(err) {
    let body;
    assert.doesNotThrow(() => (body = JSON.parse(err.body)), `error body is not JSON: ${err.body}`);
    assert.equal(typeof body.error, 'string', `no "error" string in ${err.body}`);
    return body;
  }

  test('wrong secret -> 401', T, async () => {
    const bad = h.sdk(server.port, { ...h.APP, secret: 'not-the-secret' });
    const err = await rejectsWith(bad.trigger('c', 'e', 'x'), 401);
    jsonError(err);
    await rejectsWith(bad.triggerBatch([{ channel: 'c', name: 'e', data: 'x' }]), 401);
  });

  test('unknown app id -> 404', T, async () => {
    const unknown = h.sdk(server.port, { id: '999', key: 'nokey', secret: 'nosecret' });
    await rejectsWith(unknown.trigger('c', 'e', 'x'), 404);
  });

  test('invalid channel name "bad channel": SDK refuses locally; signed anyway -> 400', T, async () => {
    const api = h.sdk(server.port);
    // The SDK validates channel names before sending anything.
    assert.throws(() => api.trigger('bad channel', 'e', 'x'), /Invalid channel name/);
    // The SDK's generic signed post skips that check, so the server must refuse it.
    const err = await rejectsWith(
      api.post({ path: '/events', body: { name: 'e', data: 'x', channels: ['bad channel'] } }),
      400,
    );
    jsonError(err);
    const err2 = await rejectsWith(
      api.post({ path: '/batch_events', body: { batch: [{ channel: 'bad channel', name: 'e', data: 'x' }] } }),
      400,
    );
    jsonError(err2);
  });

  test('data over 10 KB -> 413; exactly 10 KB is accepted', T, async () => {
    const api = h.sdk(server.port);
    const err = await rejectsWith(api.trigger('big', 'e', 'x'.repeat(10 * 1024 + 1)), 413);
    jsonError(err);
    const ok = await api.trigger('big', 'e', 'x'.repeat(10 * 1024));
    assert.equal(ok.status, 200);
    await rejectsWith(api.triggerBatch([{ channel: 'big', name: 'e', data: 'y'.repeat(10 * 1024 + 1) }]), 413);
  });

  test('hand-signed request: valid -> 200 {}, timestamp 700 s old or ahead -> 401, wrong signature -> 401', T, async () => {
    const body = { name: 'e', data: 'x', channels: ['c'] };
    const now = Math.floor(Date.now() / 1000);
    const good = await h.signedPost(server.port, h.APP, '/apps/123/events', body, { timestamp: now });
    assert.equal(good.status, 200, good.body);
    assert.deepEqual(JSON.parse(good.body), {});
    assert.match(String(good.headers['x-sockudo-shard']), /^\d+$/);

    const old = await h.signedPost(server.port, h.APP, '/apps/123/events', body, { timestamp: now - 700 });
    assert.equal(old.status, 401, old.body);
    assert.equal(typeof JSON.parse(old.body).error, 'string');

    const future = await h.signedPost(server.port, h.APP, '/apps/123/events', body, { timestamp: now + 700 });
    assert.equal(future.status, 401, future.body);

    const badSig = await h.signedPost(server.port, h.APP, '/apps/123/events', body, { secret: 'nope' });
    assert.equal(badSig.status, 401, badSig.body);
  });
});
