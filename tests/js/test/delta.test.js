'use strict';
// Delta compression end to end (DELTA-TAGS.md): every delta is decoded with the client's own packages
// (fossil-delta, @ably/vcdiff-decoder) and the reconstructed envelope must equal, byte for byte, what a plain
// subscriber of the same channel received. SHARDS=2 with subscribers pinned to each shard.

const { describe, test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const h = require('./helpers');
const raw = require('./raw');
const { deltaConn, plainConn } = require('./delta-client');

const T = { timeout: 120000 };
const APPS = [{
  ...h.DEFAULT_APPS[0],
  max_connections: 200,
  max_backend_events_per_second: 100000,
  max_client_events_per_second: 1000,
  channel_delta_compression: {
    'ticker-*': { conflation_key: 'asset' },
    'vc-*': 'xdelta3',
  },
}];

async function onShard(port, shard, make) {
  const spare = [];
  for (let i = 0; i < 64; i++) {
    const c = await make(port);
    if (c.shard === shard) {
      for (const s of spare) s.ws.close();
      return c;
    }
    spare.push(c);
  }
  throw new Error(`no connection landed on shard ${shard}`);
}

const ASSETS = ['BTC', 'ETH', 'SOL'];
const NAMES = ['tick', 'trade', 'book'];

function payload(i, asset, bookChanges = true) {
  return JSON.stringify({
    asset,
    price: (100 + i * 0.25).toFixed(2),
    volume: 1000 + i,
    exchange: 'binance',
    ts: 1700000000000 + i * 250,
    note: 'naïve – äöü ✓',
    book: Array.from({ length: 12 }, (_, k) => ({ px: 100 + k, qty: k * 7 + (bookChanges ? i % 3 : 0) })),
  });
}

async function publishAll(port, items) {
  // batch_events of 10: items of one batch are published in order.
  for (let i = 0; i < items.length; i += 10) {
    const res = await h.signedPost(port, h.APP, `/apps/${h.APP.id}/batch_events`, { batch: items.slice(i, i + 10) });
    assert.equal(res.status, 200, res.body);
  }
}

function assertSame(c, ref, channel, what, from = 0) {
  const got = c.events.get(channel) || [];
  const want = (ref.events.get(channel) || []).slice(from);
  assert.equal(c.stats.decodeErrors.length, 0, `${what}: decode errors ${c.stats.decodeErrors}`);
  assert.equal(got.length, want.length, `${what}: ${got.length} events, expected ${want.length}`);
  for (let i = 0; i < want.length; i++) assert.equal(got[i], want[i], `${what}: event ${i}`);
}

describe('delta compression (SHARDS=2)', () => {
  let server;
  const conns = [];
  before(async () => {
    server = await h.startServer({ shards: 2, apps: APPS });
  });
  after(async () => {
    for (const c of conns) c.ws.close();
    const res = await server.stop();
    assert.equal(res.code, 0);
  });

  test('long interleaved runs decode exactly on both shards, fossil and xdelta3, with late joiners', T, async () => {
    const port = server.port;
    const ref = await onShard(port, '0', plainConn);
    const f0 = await onShard(port, '0', deltaConn);
    const f1 = await onShard(port, '1', deltaConn);
    const x1 = await onShard(port, '1', deltaConn);
    conns.push(ref, f0, f1, x1);
    const reply = await f0.enableDelta();
    assert.deepEqual(reply.data, { enabled: true, algorithm: 'fossil' });
    await f1.enableDelta();
    for (const ch of ['ticker-a', 'feed', 'vc-feed']) {
      await raw.rawSubscribe(ref, ch);
      await raw.rawSubscribe(f0, ch);
      await raw.rawSubscribe(f1, ch);
      // Per subscription opt-in, no global enable: xdelta3 everywhere for this socket.
      await raw.rawSubscribe(x1, ch, { delta: { enabled: true, algorithm: 'xdelta3' } });
    }
    const items = [];
    for (let i = 0; i < 300; i++) {
      const asset = ASSETS[i % 3];
      const name = NAMES[(i >> 1) % 3];
      items.push({ name, channel: 'ticker-a', data: payload(i, asset) });
      items.push({ name, channel: 'feed', data: payload(i, asset) });
      if (i % 3 === 0) items.push({ name, channel: 'vc-feed', data: payload(i, asset) });
    }
    await publishAll(port, items.slice(0, 300));
    // Late joiners, one per shard, in the middle of the stream.
    const late0 = await onShard(port, '0', deltaConn);
    const late1 = await onShard(port, '1', deltaConn);
    conns.push(late0, late1);
    await late0.enableDelta();
    await late1.enableDelta();
    await h.until(() => (ref.events.get('feed') || []).length >= 1, 5000);
    const offset = {};
    for (const ch of ['ticker-a', 'feed', 'vc-feed']) {
      await raw.rawSubscribe(late0, ch);
      await raw.rawSubscribe(late1, ch, { delta: 'fossil' });
    }
    for (const ch of ['ticker-a', 'feed', 'vc-feed']) offset[ch] = (ref.events.get(ch) || []).length;
    await publishAll(port, items.slice(300));
    const total = items.length;
    await h.until(() => ['ticker-a', 'feed', 'vc-feed'].reduce((n, ch) => n + (ref.events.get(ch) || []).length, 0) === total, 20000, 'reference got everything');
    await h.until(() => [f0, f1, x1].every((c) => [...c.events.values()].reduce((n, l) => n + l.length, 0) === total), 20000, 'delta sockets got everything');
    for (const [c, what] of [[f0, 'fossil shard 0'], [f1, 'fossil shard 1'], [x1, 'xdelta3 shard 1']]) {
      for (const ch of ['ticker-a', 'feed', 'vc-feed']) assertSame(c, ref, ch, `${what} ${ch}`);
      assert.ok(c.stats.delta > c.stats.full, `${what}: ${c.stats.delta} deltas vs ${c.stats.full} fulls`);
      assert.equal(c.stats.syncErrors, 0, `${what}: sync errors`);
      assert.ok(c.stats.bytes < ref.stats.bytes * 0.8, `${what}: ${c.stats.bytes} bytes vs plain ${ref.stats.bytes}`);
    }
    assert.equal(x1.lastAlgorithm, 'xdelta3');
    assert.equal(f0.lastAlgorithm, 'fossil');
    for (const [c, what] of [[late0, 'late joiner shard 0'], [late1, 'late joiner shard 1']]) {
      await h.until(() => ['ticker-a', 'feed', 'vc-feed'].every((ch) => (c.events.get(ch) || []).length === (ref.events.get(ch) || []).length - offset[ch]), 20000, what);
      for (const ch of ['ticker-a', 'feed', 'vc-feed']) assertSame(c, ref, ch, `${what} ${ch}`, offset[ch]);
      assert.ok(c.stats.delta > 0, `${what} got deltas`);
      assert.equal(c.stats.syncErrors, 0);
    }
    // The vc-* channel rule makes xdelta3 the algorithm of globally opted-in sockets there.
    const vcDelta = f0.messages.find((m) => m.event === 'pusher:delta' && m.channel === 'vc-feed');
    assert.equal(vcDelta.data.algorithm, 'xdelta3');
    // Conflation channel frames carry the key; the plain channel's do not.
    const tick = f0.messages.find((m) => m.event === 'pusher:delta' && m.channel === 'ticker-a');
    assert.ok(ASSETS.includes(tick.data.conflation_key));
    assert.equal(typeof tick.data.base_index, 'number');
    const feed = f0.messages.find((m) => m.event === 'pusher:delta' && m.channel === 'feed');
    assert.equal(feed.data.conflation_key, undefined);
  });

  test('a sync error gets a full message next; delta:false publishes plain; encrypted channels are never tracked', T, async () => {
    const port = server.port;
    const c = await onShard(port, '1', deltaConn);
    const ref = await onShard(port, '0', plainConn);
    conns.push(c, ref);
    await c.enableDelta();
    await raw.rawSubscribe(c, 'sync');
    await raw.rawSubscribe(ref, 'sync');
    const items = (from, n) => Array.from({ length: n }, (_, i) => ({ name: 'e', channel: 'sync', data: payload(from + i, 'BTC') }));
    await publishAll(port, items(0, 5));
    await h.until(() => [c, ref].every((x) => (x.events.get('sync') || []).length === 5), 5000);
    // The client loses its state (as sockudo-js does when it cannot find a base) and reports it.
    c.channels.delete('sync');
    c.send({ event: 'pusher:delta_sync_error', data: { channel: 'sync' } });
    await h.sleep(100);
    await publishAll(port, items(5, 5));
    await h.until(() => [c, ref].every((x) => (x.events.get('sync') || []).length === 10), 5000);
    assertSame(c, ref, 'sync', 'after sync error');
    assert.equal(c.stats.syncErrors, 0, 'no delta arrived without a base');
    const isEvent = (m) => m.channel === 'sync' && !m.event.startsWith('pusher_internal:');
    const after = c.messages.filter(isEvent).slice(5);
    assert.equal(typeof after[0].__delta_seq, 'number', 'first message after the sync error is full');
    assert.equal(after[1].event, 'pusher:delta');

    // delta:false: a plain frame, and the delta stream continues against the previous base.
    await publishAll(port, [{ name: 'e', channel: 'sync', data: payload(50, 'BTC'), delta: false }, ...items(51, 2)]);
    await h.until(() => [c, ref].every((x) => (x.events.get('sync') || []).length === 13), 5000);
    assertSame(c, ref, 'sync', 'with delta:false');
    const last = c.messages.filter(isEvent).slice(10);
    assert.equal(last[0].event, 'e');
    assert.equal(last[0].__delta_seq, undefined);
    assert.equal(last[1].event, 'pusher:delta');

    // Encrypted channels: plain frames, even for an opted-in socket asking for deltas.
    const api = h.sdk(port, h.APP, { encryptionMasterKeyBase64: Buffer.alloc(32, 7).toString('base64') });
    const enc = 'private-encrypted-x';
    const auth = api.authorizeChannel(c.socketId, enc);
    await raw.rawSubscribe(c, enc, { ...auth, delta: true });
    await publishAll(port, Array.from({ length: 3 }, (_, i) => ({ name: 'e', channel: enc, data: JSON.stringify({ nonce: 'n', ciphertext: 'x'.repeat(300) + i }) })));
    await h.until(() => (c.events.get(enc) || []).length === 3, 5000);
    assert.ok(c.messages.filter((m) => m.channel === enc && m.event === 'e').every((m) => m.__delta_seq === undefined));
  });

  test('presence and cache channels: member events and the cache replay are plain, events decode', T, async () => {
    const port = server.port;
    const api = h.sdk(port);
    const ref = await onShard(port, '0', plainConn);
    const c = await onShard(port, '1', deltaConn);
    conns.push(ref, c);
    await c.enableDelta();
    await raw.rawPresence(api, ref, 'presence-room', 'u-ref', { n: 1 });
    await raw.rawPresence(api, c, 'presence-room', 'u-delta', { n: 2 });
    await publishAll(port, Array.from({ length: 20 }, (_, i) => ({ name: 'p', channel: 'presence-room', data: payload(i, 'ETH') })));
    await h.until(() => (c.events.get('presence-room') || []).length === 20, 5000);
    await h.until(() => (ref.events.get('presence-room') || []).length === 20, 5000);
    assertSame(c, ref, 'presence-room', 'presence');
    assert.ok(c.stats.delta >= 15, JSON.stringify(c.stats));
    const late = await onShard(port, '0', deltaConn);
    conns.push(late);
    await raw.rawPresence(api, late, 'presence-room', 'u-late', {});
    const added = await c.next((m) => m.event === 'pusher_internal:member_added');
    assert.equal(added.__delta_seq, undefined, 'member events are never tracked');

    // Cache channel: the replay on subscribe is a plain frame, later events are tracked and decode.
    await publishAll(port, [{ name: 'snap', channel: 'cache-prices', data: payload(0, 'SOL') }]);
    const cref = await onShard(port, '0', plainConn);
    const cc = await onShard(port, '1', deltaConn);
    conns.push(cref, cc);
    await cc.enableDelta();
    await raw.rawSubscribe(cref, 'cache-prices');
    await raw.rawSubscribe(cc, 'cache-prices');
    await publishAll(port, Array.from({ length: 10 }, (_, i) => ({ name: 'snap', channel: 'cache-prices', data: payload(i + 1, 'SOL') })));
    await h.until(() => (cc.events.get('cache-prices') || []).length === 11, 5000);
    await h.until(() => (cref.events.get('cache-prices') || []).length === 11, 5000);
    assertSame(cc, cref, 'cache-prices', 'cache channel');
    const first = cc.messages.find((m) => m.channel === 'cache-prices' && m.event === 'snap');
    assert.equal(first.__delta_seq, undefined, 'the replay is plain');
    assert.ok(cc.stats.delta >= 8, JSON.stringify(cc.stats));
  });

  test('client events are delta-tracked for opted-in recipients', T, async () => {
    const port = server.port;
    const api = h.sdk(port);
    const sender = await onShard(port, '0', deltaConn);
    const rx = await onShard(port, '1', deltaConn);
    const ref = await onShard(port, '1', plainConn);
    conns.push(sender, rx, ref);
    await rx.enableDelta();
    for (const c of [sender, rx, ref]) await raw.rawPrivate(api, c, 'private-chat');
    for (let i = 0; i < 30; i++) {
      sender.send({ event: 'client-move', channel: 'private-chat', data: JSON.parse(payload(i, 'BTC', false)) });
      await h.sleep(5);
    }
    await h.until(() => (rx.events.get('private-chat') || []).length === 30, 5000);
    await h.until(() => (ref.events.get('private-chat') || []).length === 30, 5000);
    assertSame(rx, ref, 'private-chat', 'client events');
    assert.ok(rx.stats.delta > 10, JSON.stringify(rx.stats) + JSON.stringify(rx.messages.slice(-3)));
  });
});

describe('delta compression with omit_delta_algorithm and xdelta3 as the server algorithm', () => {
  let server;
  before(async () => {
    server = await h.startServer({
      shards: 1,
      apps: APPS,
      config: { delta_compression: { algorithm: 'xdelta3', omit_delta_algorithm: true } },
    });
  });
  after(async () => {
    const res = await server.stop();
    assert.equal(res.code, 0);
  });

  test('a subscription-only opt-in is told the algorithm, and frames without it decode', T, async () => {
    const port = server.port;
    const ref = await plainConn(port);
    const c = await deltaConn(port);
    await raw.rawSubscribe(ref, 'omit');
    await raw.rawSubscribe(c, 'omit', { delta: true });
    const reply = c.messages.find((m) => m.event === 'pusher:delta_compression_enabled');
    assert.deepEqual(reply.data, { enabled: true, algorithm: 'xdelta3', channel: 'omit' });
    await publishAll(port, Array.from({ length: 20 }, (_, i) => ({ name: 'e', channel: 'omit', data: payload(i, 'BTC') })));
    await h.until(() => (c.events.get('omit') || []).length === 20, 5000);
    await h.until(() => (ref.events.get('omit') || []).length === 20, 5000);
    assertSame(c, ref, 'omit', 'omitted algorithm');
    const deltas = c.messages.filter((m) => m.event === 'pusher:delta');
    assert.ok(deltas.length >= 15);
    assert.ok(deltas.every((m) => m.data.algorithm === undefined));
    ref.ws.close();
    c.ws.close();
  });
});

describe('delta compression limits: min_message_size, max_channel_states_per_socket, conflation_key_path', () => {
  let server;
  before(async () => {
    server = await h.startServer({
      shards: 1,
      apps: APPS,
      config: {
        delta_compression: { min_message_size: 400, max_channel_states_per_socket: 2, conflation_key_path: 'asset' },
      },
    });
  });
  after(async () => {
    const res = await server.stop();
    assert.equal(res.code, 0);
  });

  test('small envelopes stay plain, the third channel of a socket is plain, the server-wide key path conflates', T, async () => {
    const port = server.port;
    const ref = await plainConn(port);
    const c = await deltaConn(port);
    await c.enableDelta();
    const channels = ['lim-a', 'lim-b', 'lim-c'];
    for (const ch of channels) {
      await raw.rawSubscribe(ref, ch);
      await raw.rawSubscribe(c, ch);
    }
    const small = (asset) => JSON.stringify({ asset, small: true });
    const items = [];
    for (let i = 0; i < 12; i++) {
      const asset = ASSETS[i % 2];
      for (const ch of channels) items.push({ name: 'e', channel: ch, data: payload(i, asset) });
    }
    // Under 400 bytes: plain frames, and the delta stream goes on against the last large message.
    items.push({ name: 'e', channel: 'lim-a', data: small('BTC') });
    for (let i = 12; i < 16; i++) items.push({ name: 'e', channel: 'lim-a', data: payload(i, 'BTC') });
    await publishAll(port, items);
    const want = { 'lim-a': 17, 'lim-b': 12, 'lim-c': 12 };
    for (const [ch, n] of Object.entries(want)) {
      await h.until(() => (ref.events.get(ch) || []).length === n && (c.events.get(ch) || []).length === n, 5000, ch);
      assertSame(c, ref, ch, ch);
    }
    const of = (ch) => c.messages.filter((m) => m.channel === ch && !m.event.startsWith('pusher_internal:'));
    // Subscription order decides which two channels get delta state.
    for (const ch of ['lim-a', 'lim-b']) {
      const frames = of(ch);
      assert.ok(frames.filter((m) => m.event === 'pusher:delta').length >= 8, `${ch} got deltas`);
      // No app rule matches lim-*: the server-wide conflation_key_path applies.
      const full = frames.find((m) => typeof m.__delta_seq === 'number');
      assert.ok(ASSETS.includes(full.__conflation_key), JSON.stringify(full));
      assert.ok(frames.filter((m) => m.event === 'pusher:delta').every((m) => ASSETS.includes(m.data.conflation_key)));
    }
    assert.ok(of('lim-c').every((m) => m.event === 'e' && m.__delta_seq === undefined), 'over the per-socket cap: plain');
    const smallFrame = of('lim-a').find((m) => m.event === 'e' && JSON.parse(m.data).small === true);
    assert.ok(smallFrame, 'the small event arrived');
    assert.equal(smallFrame.__delta_seq, undefined, 'a small envelope is not tracked');
    assert.equal(of('lim-a').at(-1).event, 'pusher:delta', 'deltas resume after the small message');

    // Leaving a tracked channel frees its slot: a new subscription gets delta state again.
    c.send({ event: 'pusher:unsubscribe', data: { channel: 'lim-b' } });
    await h.sleep(100);
    await raw.rawSubscribe(ref, 'lim-d');
    await raw.rawSubscribe(c, 'lim-d');
    await publishAll(port, Array.from({ length: 5 }, (_, i) => ({ name: 'e', channel: 'lim-d', data: payload(i, 'SOL') })));
    await h.until(() => (c.events.get('lim-d') || []).length === 5 && (ref.events.get('lim-d') || []).length === 5, 5000, 'lim-d');
    assertSame(c, ref, 'lim-d', 'lim-d');
    assert.ok(of('lim-d').filter((m) => m.event === 'pusher:delta').length >= 3, 'the freed slot tracks lim-d');
    ref.ws.close();
    c.ws.close();
  });
});
