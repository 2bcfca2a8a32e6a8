'use strict';
// Cross-shard delivery: subscribers accepted by different shards (seen in the
// X-Sockudo-Shard upgrade header) all get every event, in order, whichever
// shard accepted the REST call.

const { describe, test, before, after, afterEach } = require('node:test');
const assert = require('node:assert/strict');
const http = require('node:http');
const h = require('./helpers');

const T = { timeout: 20000 };

/** Open raw ws connections until one is on each of `shards` shards; close the spares. */
async function onePerShard(port, shards = ['0', '1']) {
  const byShard = new Map();
  const spare = [];
  for (let i = 0; i < 64 && byShard.size < shards.length; i++) {
    const c = await h.rawWs(port);
    await c.next((m) => m.event === 'pusher:connection_established');
    if (shards.includes(c.shard) && !byShard.has(c.shard)) byShard.set(c.shard, c);
    else spare.push(c);
  }
  for (const c of spare) c.ws.close();
  return byShard;
}

async function rawSubscribe(c, channel) {
  c.ws.send(JSON.stringify({ event: 'pusher:subscribe', data: { channel } }));
  const ok = await c.next(
    (m) => (m.event === 'pusher_internal:subscription_succeeded' && m.channel === channel) || m.event === 'pusher:error',
  );
  assert.equal(ok.event, 'pusher_internal:subscription_succeeded', JSON.stringify(ok));
}

const eventsOf = (c, channel, name) =>
  c.messages.filter((m) => m.channel === channel && m.event === name).map((m) => m.parsedData ?? m.data);

describe('cross-shard delivery (SHARDS=2)', () => {
  let server;
  let conns = [];

  before(async () => {
    server = await h.startServer({ shards: 2 });
  });
  afterEach(() => {
    for (const c of conns) c.ws.close();
    conns = [];
  });
  after(async () => {
    const res = await server.stop();
    assert.equal(res.code, 0, `server exit ${JSON.stringify(res)}\n${server.logs()}`);
  });

  test('the upgrade response names the shard, and both shards accept connections', T, async () => {
    const byShard = await onePerShard(server.port);
    conns = [...byShard.values()];
    assert.deepEqual([...byShard.keys()].sort(), ['0', '1'], 'could not get a connection on each shard');
    const ids = conns.map((c) => c.messages[0].parsedData.socket_id);
    for (const id of ids) assert.match(id, /^\d+\.\d+$/);
    assert.notEqual(ids[0], ids[1]);
  });

  test('subscribers on shard 0 and shard 1 get every SDK-published event, in order', T, async () => {
    const byShard = await onePerShard(server.port);
    conns = [...byShard.values()];
    assert.equal(byShard.size, 2, 'could not get a connection on each shard');
    for (const c of conns) await rawSubscribe(c, 'xshard');

    // A fresh TCP connection per call (no keep-alive), so the SDK's calls are
    // accepted by both shards too.
    const api = h.sdk(server.port, h.APP, { agent: new http.Agent({ keepAlive: false }) });
    const N = 30;
    const expected = [];
    const restShards = new Set();
    for (let i = 0; i < N; i++) {
      expected.push({ seq: i });
      const res = await api.trigger('xshard', 'seq', { seq: i });
      assert.equal(res.status, 200);
      restShards.add(res.headers.get('x-sockudo-shard'));
    }
    assert.deepEqual([...restShards].sort(), ['0', '1'], 'SDK calls never landed on both shards');
    await h.until(() => conns.every((c) => eventsOf(c, 'xshard', 'seq').length >= N), 5000, 'all events on both shards');
    for (const [shard, c] of byShard) {
      assert.deepEqual(eventsOf(c, 'xshard', 'seq'), expected, `shard ${shard} subscriber`);
    }
  });

  test('raw REST publishes accepted by each shard reach subscribers on both shards, in order', T, async () => {
    const byShard = await onePerShard(server.port);
    conns = [...byShard.values()];
    assert.equal(byShard.size, 2, 'could not get a connection on each shard');
    for (const c of conns) await rawSubscribe(c, 'xshard-raw');

    const restShards = new Set();
    const expected = [];
    for (let i = 0; i < 64 && (restShards.size < 2 || i < 20); i++) {
      const res = await h.signedPost(server.port, h.APP, '/apps/123/events', {
        name: 'n',
        data: JSON.stringify({ i }),
        channels: ['xshard-raw'],
      });
      assert.equal(res.status, 200, res.body);
      assert.match(String(res.headers['x-sockudo-shard']), /^[01]$/);
      restShards.add(res.headers['x-sockudo-shard']);
      expected.push({ i });
    }
    assert.deepEqual([...restShards].sort(), ['0', '1'], 'REST calls never landed on both shards');
    await h.until(
      () => conns.every((c) => eventsOf(c, 'xshard-raw', 'n').length >= expected.length),
      5000,
      'all events on both shards',
    );
    for (const [shard, c] of byShard) {
      assert.deepEqual(eventsOf(c, 'xshard-raw', 'n'), expected, `shard ${shard} subscriber`);
    }
  });

  test('socket_id exclusion works across shards', T, async () => {
    const byShard = await onePerShard(server.port);
    conns = [...byShard.values()];
    assert.equal(byShard.size, 2, 'could not get a connection on each shard');
    for (const c of conns) await rawSubscribe(c, 'xshard-excl');
    const api = h.sdk(server.port);
    for (const [shard, excluded] of byShard) {
      const socketId = excluded.messages[0].parsedData.socket_id;
      for (let k = 0; k < 4; k++) {
        // Several calls, so the REST request lands on both shards at least sometimes.
        await api.trigger('xshard-excl', `not-${shard}`, { k }, { socket_id: socketId });
      }
    }
    await h.until(
      () => eventsOf(byShard.get('0'), 'xshard-excl', 'not-1').length === 4 &&
        eventsOf(byShard.get('1'), 'xshard-excl', 'not-0').length === 4,
      5000,
      'non-excluded deliveries',
    );
    await h.sleep(300);
    assert.deepEqual(eventsOf(byShard.get('0'), 'xshard-excl', 'not-0'), [], 'shard 0 socket got its excluded events');
    assert.deepEqual(eventsOf(byShard.get('1'), 'xshard-excl', 'not-1'), [], 'shard 1 socket got its excluded events');
  });

  test('pusher-js clients spread over the shards all receive', T, async () => {
    // pusher-js hides the upgrade headers; with 8 connections the kernel spreads
    // them over both shards with overwhelming probability, and each must receive.
    const ps = [];
    try {
      for (let i = 0; i < 8; i++) ps.push(await h.connectedClient(server.port));
      const chans = await Promise.all(ps.map((p) => h.subscribe(p, 'xshard-js')));
      const got = chans.map((ch) => h.collect(ch, 'e'));
      const api = h.sdk(server.port);
      for (let i = 0; i < 10; i++) await api.trigger('xshard-js', 'e', i);
      await h.until(() => got.every((g) => g.length === 10), 5000, 'every pusher-js client got 10 events');
      for (const g of got) assert.deepEqual(g, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    } finally {
      for (const p of ps) p.disconnect();
    }
  });
});
