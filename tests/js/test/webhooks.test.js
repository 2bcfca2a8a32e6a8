'use strict';
// Webhooks (PROTOCOL.md 2.3) as a real HTTP receiver sees them, checked with the official `pusher` Node SDK:
// every event type produced through pusher-js clients (raw sockets where a test needs a given shard),
// exact payloads and counts, once-per-server occupied/vacated across shards, the 3 s delay and its
// suppression on quick re-join, event_types and channel prefix/suffix filters, custom headers, batching,
// retries after 5xx/429, and a dead webhook URL that must not disturb the server.
//
// Every test starts its own server (SHARDS=2) and receiver; after each test the server must exit 0 and every
// request the receiver got must be a valid Pusher webhook (webhook.isValid(), content-type exactly
// application/json, X-Pusher-Key, time_ms within 300 s).

const { describe, test } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const h = require('./helpers');
const r = require('./raw');
const { startReceiver, failFirst } = require('./webhook-receiver');

const T = { timeout: 20000 };
const APP = h.APP;
const ALL_TYPES = [
  'channel_occupied', 'channel_vacated', 'member_added', 'member_removed',
  'client_event', 'cache_miss', 'subscription_count',
];
// The server delays channel_vacated / member_removed by ~3 s; accept 2.5 s .. 6 s after the leave.
const DELAY_MIN = 2500;
const DELAY_MAX = 6000;
const VACATED_WAIT = 9000;

/**
 * Only for absence checks ("nothing more arrives"): there is no event to wait for, so give the server a
 * bounded moment. Positive checks always wait for the condition instead.
 */
const settle = (ms = 500) => h.sleep(ms);

/** [name, channel] pairs, for compact exact comparisons. */
const pairs = (events) => events.map((e) => [e.name, e.channel]);

/** A plain copy of an event (drops the receiver's non-enumerable `_req`) for deepEqual. */
const plain = (e) => ({ ...e });

function assertDelay(event, leftAt, what) {
  const delay = event._req.receivedAt - leftAt;
  assert.ok(delay >= DELAY_MIN && delay <= DELAY_MAX,
    `${what} came ${delay} ms after the leave; want ~3 s (${DELAY_MIN}..${DELAY_MAX} ms)`);
}

/**
 * Start a receiver and a server whose app has `webhooks` (an array, or a function of the receiver returning
 * one). Registers clean-up on `t`: clients disconnected, server stopped (exit code 0), receiver closed, and
 * every received request valid. Returns { rx, server, api, connect, presence, priv }.
 */
async function setup(t, { webhooks, app = {}, shards = 2, config, env, respond } = {}) {
  const rx = await startReceiver({ app: APP, respond });
  const clients = [];
  const raws = [];
  let server = null;
  t.after(async () => {
    for (const p of clients) p.disconnect();
    for (const c of raws) c.ws.close();
    const res = server ? await server.stop() : { code: 0 };
    await rx.close();
    assert.equal(res.code, 0, `server exit ${JSON.stringify(res)}\n${server?.logs()}`);
    rx.assertAllValid();
  });
  server = await h.startServer({
    shards,
    config,
    env,
    apps: [{
      id: APP.id,
      key: APP.key,
      secret: APP.secret,
      enabled: true,
      enable_client_messages: true,
      ...app,
      webhooks: typeof webhooks === 'function' ? webhooks(rx) : webhooks,
    }],
  });
  const api = h.sdk(server.port);
  const connect = async (extra = {}) => {
    const p = await h.connectedClient(server.port, APP.key, extra);
    clients.push(p);
    return p;
  };
  return {
    rx,
    server,
    api,
    connect,
    /** pusher-js client that authorizes presence channels as `userId`. */
    presence: (userId, info = {}) => connect({ channelAuthorization: r.presenceAuthorizer(api, userId, info) }),
    /** pusher-js client that authorizes private channels. */
    priv: () => connect({ channelAuthorization: r.privateAuthorizer(api) }),
    /** Raw connections, `count` on each shard (Map shard -> [conn]); closed at the end. */
    perShard: async (count = 1) => {
      const byShard = await r.perShard(server.port, count);
      for (const l of byShard.values()) raws.push(...l);
      return byShard;
    },
  };
}

describe('webhook receiver (self-check, needs no server)', () => {
  test('accepts a correctly signed webhook; flags a wrong signature, a charset content-type and a GET', T, async () => {
    const rx = await startReceiver({ app: APP, respond: failFirst(1, 500, ['/scripted']) });
    try {
      const body = JSON.stringify({ time_ms: Date.now(), events: [{ name: 'channel_occupied', channel: 'c' }] });
      const sig = crypto.createHmac('sha256', APP.secret).update(body).digest('hex');
      const hdrs = { 'x-pusher-key': APP.key, 'x-pusher-signature': sig };

      const ok = await h.httpRequest(rx.port, 'POST', '/ok', body, hdrs);
      assert.equal(ok.status, 200);
      assert.deepEqual(rx.problems, []);
      assert.equal(rx.requests[0].valid, true);
      assert.deepEqual(rx.events('/ok').map(plain), [{ name: 'channel_occupied', channel: 'c' }]);
      assert.ok(rx.requests[0].time instanceof Date);

      // Scripted answers: 500 first, then 200.
      assert.equal((await h.httpRequest(rx.port, 'POST', '/scripted', body, hdrs)).status, 500);
      assert.equal((await h.httpRequest(rx.port, 'POST', '/scripted', body, hdrs)).status, 200);
      assert.equal(rx.events('/scripted').length, 2);
      assert.equal(rx.events('/scripted', { accepted: true }).length, 1);

      await h.httpRequest(rx.port, 'POST', '/badsig', body, { ...hdrs, 'x-pusher-signature': '00'.repeat(32) });
      await h.httpRequest(rx.port, 'POST', '/charset', body, { ...hdrs, 'content-type': 'application/json; charset=utf-8' });
      await h.httpRequest(rx.port, 'POST', '/wrongkey', body, { ...hdrs, 'x-pusher-key': 'other' });
      const stale = JSON.stringify({ time_ms: Date.now() - 400 * 1000, events: [{ name: 'x', channel: 'c' }] });
      await h.httpRequest(rx.port, 'POST', '/stale', stale, {
        ...hdrs, 'x-pusher-signature': crypto.createHmac('sha256', APP.secret).update(stale).digest('hex'),
      });
      await h.httpRequest(rx.port, 'GET', '/get');
      assert.deepEqual(rx.problems.map((p) => p.path), ['/badsig', '/charset', '/wrongkey', '/stale', '/get']);
      assert.throws(() => rx.assertAllValid(), /invalid webhook/);
      await assert.rejects(rx.waitFor(() => false, 1000, 'never'), /invalid webhook\(s\) while waiting for never/);
      assert.deepEqual(rx.events('/badsig'), [], 'events of invalid requests are not reported');
    } finally {
      await rx.close();
    }
  });
});

describe('webhooks (SHARDS=2)', () => {
  test('channel_occupied / channel_vacated: exact payload and headers, one event per request, vacated ~3 s after the last subscriber', T, async (t) => {
    const { rx, connect } = await setup(t, {
      webhooks: (rx) => [{
        url: rx.url('/hook'),
        event_types: ['channel_occupied', 'channel_vacated'],
        headers: { 'X-Custom': 'custom-value' },
      }],
    });
    const p = await connect();
    await h.subscribe(p, 'wh-basic');
    const occ = await rx.waitForEvent('/hook', 'channel_occupied', 'wh-basic');
    assert.deepEqual(plain(occ), { name: 'channel_occupied', channel: 'wh-basic' });
    const req = occ._req;
    assert.equal(req.method, 'POST');
    assert.equal(req.headers['content-type'], 'application/json');
    assert.equal(req.headers['x-pusher-key'], APP.key);
    assert.match(req.headers['x-pusher-signature'], /^[0-9a-f]{64}$/);
    assert.equal(req.headers['x-custom'], 'custom-value', `custom header missing: ${JSON.stringify(req.headers)}`);
    assert.equal(req.events.length, 1, `without batching one event per request: ${req.rawBody}`);
    assert.ok(Math.abs(req.time.getTime() - req.receivedAt) < 5000, `time_ms ${req.time.getTime()} is not now`);

    // A second subscriber: no second occupied; the first leaving does not vacate.
    const q = await connect();
    await h.subscribe(q, 'wh-basic');
    p.unsubscribe('wh-basic');
    await h.sleep(300);
    const leftAt = Date.now();
    q.disconnect();
    const vac = await rx.waitForEvent('/hook', 'channel_vacated', 'wh-basic', VACATED_WAIT);
    assert.deepEqual(plain(vac), { name: 'channel_vacated', channel: 'wh-basic' });
    assertDelay(vac, leftAt, 'channel_vacated');
    assert.equal(vac._req.headers['x-custom'], 'custom-value');
    await settle();
    assert.deepEqual(pairs(rx.events('/hook')), [['channel_occupied', 'wh-basic'], ['channel_vacated', 'wh-basic']],
      `exactly one occupied then one vacated:\n${rx.report()}`);
    assert.equal(rx.requests.length, 2, rx.report());
  });

  test('member_added once per user (two sockets of one user), member_removed ~3 s after the user\'s last socket', T, async (t) => {
    const { rx, presence } = await setup(t, {
      webhooks: (rx) => [{ url: rx.url('/hook'), event_types: ['member_added', 'member_removed'] }],
    });
    const CH = 'presence-wh';
    const alice1 = await presence('alice', { n: 1 });
    await h.subscribe(alice1, CH);
    const added = await rx.waitForEvent('/hook', 'member_added', CH);
    assert.deepEqual(plain(added), { name: 'member_added', channel: CH, user_id: 'alice' });
    const alice2 = await presence('alice', { n: 1 });
    await h.subscribe(alice2, CH);
    const bob = await presence('bob', { n: 2 });
    await h.subscribe(bob, CH);
    await rx.waitForEvents('/hook', (e) => e.name === 'member_added' && e.user_id === 'bob', 1, 5000, 'member_added bob');

    // bob leaves; alice leaves with one socket now and her last one 1 s later.
    const t0 = Date.now();
    bob.disconnect();
    alice1.disconnect();
    await h.sleep(1000);
    const t1 = Date.now();
    alice2.disconnect();
    const [bobGone] = await rx.waitForEvents('/hook', (e) => e.name === 'member_removed' && e.user_id === 'bob', 1,
      VACATED_WAIT, 'member_removed bob');
    assert.deepEqual(plain(bobGone), { name: 'member_removed', channel: CH, user_id: 'bob' });
    assertDelay(bobGone, t0, 'member_removed of bob');
    const [aliceGone] = await rx.waitForEvents('/hook', (e) => e.name === 'member_removed' && e.user_id === 'alice', 1,
      VACATED_WAIT, 'member_removed alice');
    assert.deepEqual(plain(aliceGone), { name: 'member_removed', channel: CH, user_id: 'alice' });
    assertDelay(aliceGone, t1, 'member_removed of alice (after her last socket)');
    await settle();
    assert.deepEqual(rx.events('/hook').map((e) => [e.name, e.user_id]),
      [['member_added', 'alice'], ['member_added', 'bob'], ['member_removed', 'bob'], ['member_removed', 'alice']],
      rx.report());
  });

  test('client_event: private without user_id, presence with user_id; object data JSON-stringified, string data as sent', T, async (t) => {
    const { rx, priv, presence } = await setup(t, {
      webhooks: (rx) => [{ url: rx.url('/hook'), event_types: ['client_event'] }],
    });
    const sender = await priv();
    const other = await priv();
    const chS = await h.subscribe(sender, 'private-wh');
    const chO = await h.subscribe(other, 'private-wh');
    const gotObj = h.once(chO, 'client-obj');
    chS.trigger('client-obj', { a: 1 });
    assert.deepEqual(await gotObj, { a: 1 });
    const gotStr = h.once(chO, 'client-str');
    chS.trigger('client-str', 'plain text');
    assert.equal(await gotStr, 'plain text');

    const carol = await presence('carol', {});
    const dave = await presence('dave', {});
    const chC = await h.subscribe(carol, 'presence-wh-ce');
    const chD = await h.subscribe(dave, 'presence-wh-ce');
    const gotP = h.once(chD, 'client-hi');
    chC.trigger('client-hi', 'hello');
    await gotP;

    const evs = await rx.waitForEvents('/hook', (e) => e.name === 'client_event', 3, 5000, '3 client_event webhooks');
    const byEvent = Object.fromEntries(evs.map((e) => [e.event, plain(e)]));
    const obj = byEvent['client-obj'];
    assert.ok(obj, rx.report());
    assert.equal(typeof obj.data, 'string', `object data must arrive as a JSON string: ${JSON.stringify(obj)}`);
    assert.deepEqual(JSON.parse(obj.data), { a: 1 });
    assert.deepEqual({ ...obj, data: '<checked>' }, {
      name: 'client_event', channel: 'private-wh', event: 'client-obj', data: '<checked>',
      socket_id: sender.connection.socket_id,
    });
    assert.deepEqual(byEvent['client-str'], {
      name: 'client_event', channel: 'private-wh', event: 'client-str', data: 'plain text',
      socket_id: sender.connection.socket_id,
    });
    assert.deepEqual(byEvent['client-hi'], {
      name: 'client_event', channel: 'presence-wh-ce', event: 'client-hi', data: 'hello',
      socket_id: carol.connection.socket_id, user_id: 'carol',
    });
    await settle();
    assert.equal(rx.events('/hook').length, 3, `exactly 3 client_event webhooks:\n${rx.report()}`);
  });

  test('cache_miss for each subscriber of an empty cache channel, none once an event is cached or for other channels', T, async (t) => {
    const { rx, api, connect } = await setup(t, {
      webhooks: (rx) => [{ url: rx.url('/hook'), event_types: ['cache_miss'] }],
    });
    const p1 = await connect();
    const miss1 = h.once(p1.subscribe('cache-wh'), 'pusher:cache_miss');
    await miss1;
    const first = await rx.waitForEvent('/hook', 'cache_miss', 'cache-wh');
    assert.deepEqual(plain(first), { name: 'cache_miss', channel: 'cache-wh' });
    const p2 = await connect();
    await h.once(p2.subscribe('cache-wh'), 'pusher:cache_miss');
    await rx.waitForEvents('/hook', (e) => e.name === 'cache_miss', 2, 5000, 'second cache_miss');
    await h.subscribe(p2, 'not-cached');

    await api.trigger('cache-wh', 'score', { home: 1 });
    const p3 = await connect();
    assert.deepEqual(await h.once(p3.subscribe('cache-wh'), 'score'), { home: 1 }, 'late subscriber gets the cached event');
    await settle();
    assert.deepEqual(rx.events('/hook').map(plain), [
      { name: 'cache_miss', channel: 'cache-wh' },
      { name: 'cache_miss', channel: 'cache-wh' },
    ], rx.report());
  });

  test('subscription_count on public and private channels, coalesced (>= 100 ms apart), never for presence', T, async (t) => {
    const { rx, connect, priv, presence } = await setup(t, {
      webhooks: (rx) => [{ url: rx.url('/hook'), event_types: ['subscription_count'] }],
    });
    const CH = 'wh-count';
    const ps = [];
    for (let i = 0; i < 5; i++) ps.push(await connect());
    // All five subscribe in the same tick: five count changes close together.
    await Promise.all(ps.map((p) => h.subscribe(p, CH)));
    const lastCount = (ch) => rx.eventsOf('/hook', 'subscription_count', ch).at(-1)?.subscription_count;
    await rx.waitFor(() => lastCount(CH) === 5, 5000, `subscription_count 5 on ${CH}`);
    const atFive = rx.eventsOf('/hook', 'subscription_count', CH);
    assert.ok(atFive.length < 5, `5 subscriptions at once must be coalesced, got ${atFive.length} webhooks:\n${rx.report()}`);
    assert.deepEqual(plain(atFive.at(-1)), { name: 'subscription_count', channel: CH, subscription_count: 5 });

    ps[0].disconnect();
    ps[1].unsubscribe(CH);
    await rx.waitFor(() => lastCount(CH) === 3, 5000, `subscription_count 3 on ${CH} after two left`);

    const pv = await priv();
    await h.subscribe(pv, 'private-count');
    const pe = await presence('pat', {});
    await h.subscribe(pe, 'presence-count');
    await rx.waitFor(() => lastCount('private-count') === 1, 5000, 'subscription_count 1 on private-count');
    assert.deepEqual(plain(rx.eventsOf('/hook', 'subscription_count', 'private-count').at(-1)),
      { name: 'subscription_count', channel: 'private-count', subscription_count: 1 });

    await settle();
    const all = rx.events('/hook');
    assert.deepEqual(all.filter((e) => e.channel.startsWith('presence-')), [], `no subscription_count for presence:\n${rx.report()}`);
    for (const e of all) {
      assert.deepEqual(Object.keys(e).sort(), ['channel', 'name', 'subscription_count'], JSON.stringify(e));
      assert.ok(Number.isInteger(e.subscription_count) && e.subscription_count >= 0, JSON.stringify(e));
    }
    const times = rx.eventsOf('/hook', 'subscription_count', CH).map((e) => e._req.time.getTime());
    for (let i = 1; i < times.length; i++) {
      assert.ok(times[i] - times[i - 1] >= 50,
        `subscription_count webhooks for one channel must be ~100 ms apart, not back to back (time_ms ${times}):\n${rx.report()}`);
    }
    assert.equal(lastCount(CH), 3);
  });

  test('cross-shard: exactly one channel_occupied and one channel_vacated per channel, whichever shard', T, async (t) => {
    const { rx, perShard } = await setup(t, {
      shards: 2,
      webhooks: (rx) => [{ url: rx.url('/hook'), event_types: ['channel_occupied', 'channel_vacated'] }],
    });
    const byShard = await perShard(1);
    const a = byShard.get('0')[0];
    const b = byShard.get('1')[0];
    const unsubscribe = (c, ch) => c.send({ event: 'pusher:unsubscribe', data: { channel: ch } });

    // Sequential: occupied by shard 0, vacated by shard 1 (a leaves 1 s before b).
    const sequential = async () => {
      const CH = 'wh-seq';
      await r.rawSubscribe(a, CH);
      await rx.waitForEvent('/hook', 'channel_occupied', CH);
      await r.rawSubscribe(b, CH);
      unsubscribe(a, CH);
      await h.sleep(1000);
      const leftAt = Date.now();
      unsubscribe(b, CH);
      const vac = await rx.waitForEvent('/hook', 'channel_vacated', CH, VACATED_WAIT);
      assertDelay(vac, leftAt, `channel_vacated of ${CH} (after the subscriber on shard 1 left)`);
    };
    // Racing: both shards subscribe at once, then both leave at once.
    const racing = async () => {
      const CH = 'wh-race';
      await Promise.all([r.rawSubscribe(a, CH), r.rawSubscribe(b, CH)]);
      await rx.waitForEvent('/hook', 'channel_occupied', CH);
      unsubscribe(a, CH);
      unsubscribe(b, CH);
      await rx.waitForEvent('/hook', 'channel_vacated', CH, VACATED_WAIT);
    };
    await Promise.all([sequential(), racing()]);
    await settle(700);
    for (const CH of ['wh-seq', 'wh-race']) {
      assert.deepEqual(pairs(rx.events('/hook').filter((e) => e.channel === CH)),
        [['channel_occupied', CH], ['channel_vacated', CH]], `${CH}: exactly one occupied, then one vacated:\n${rx.report()}`);
    }
  });

  test('quick re-join within 3 s suppresses channel_vacated (and the next occupied) and member_removed', T, async (t) => {
    const { rx, connect, presence } = await setup(t, {
      webhooks: (rx) => [{ url: rx.url('/hook'), event_types: ALL_TYPES.filter((x) => x !== 'subscription_count') }],
    });
    const of = (name, ch, user) => rx.events('/hook').filter((e) => e.name === name && e.channel === ch &&
      (user === undefined || e.user_id === user));

    // Channels: wh-flap is re-occupied 300 ms after its last subscriber left; wh-steady (the control) is not.
    const channels = async () => {
      const f1 = await connect();
      const s1 = await connect();
      await h.subscribe(f1, 'wh-flap');
      await h.subscribe(s1, 'wh-steady');
      await rx.waitForEvent('/hook', 'channel_occupied', 'wh-flap');
      await rx.waitForEvent('/hook', 'channel_occupied', 'wh-steady');
      f1.disconnect();
      s1.disconnect();
      await h.sleep(300);
      const f2 = await connect();
      await h.subscribe(f2, 'wh-flap');
      // The control's vacated marks when wh-flap's would have come (same moment of leaving).
      await rx.waitForEvent('/hook', 'channel_vacated', 'wh-steady', VACATED_WAIT);
      await settle(700);
      assert.deepEqual(pairs(rx.events('/hook').filter((e) => e.channel === 'wh-flap')), [['channel_occupied', 'wh-flap']],
        `re-occupied within 3 s: no vacated and no second occupied:\n${rx.report()}`);
      const leftAt = Date.now();
      f2.disconnect();
      const vac = await rx.waitForEvent('/hook', 'channel_vacated', 'wh-flap', VACATED_WAIT);
      assertDelay(vac, leftAt, 'channel_vacated of wh-flap');
    };

    // Presence: flapper rejoins (new socket, same user) 300 ms after leaving; leaver (the control) does not.
    const members = async () => {
      const CH = 'presence-flap';
      const obs = await presence('observer');
      await h.subscribe(obs, CH);
      const flap1 = await presence('flapper');
      const leave1 = await presence('leaver');
      await h.subscribe(flap1, CH);
      await h.subscribe(leave1, CH);
      await rx.waitFor(() => of('member_added', CH).length === 3, 5000, 'member_added x3');
      flap1.disconnect();
      leave1.disconnect();
      await h.sleep(300);
      const flap2 = await presence('flapper');
      await h.subscribe(flap2, CH);
      await rx.waitFor(() => of('member_removed', CH, 'leaver').length === 1, VACATED_WAIT, 'member_removed leaver');
      await settle(700);
      assert.equal(of('member_added', CH, 'flapper').length, 1, `one member_added for flapper:\n${rx.report()}`);
      assert.equal(of('member_removed', CH, 'flapper').length, 0, `member_removed suppressed for flapper:\n${rx.report()}`);
      const leftAt = Date.now();
      flap2.disconnect();
      await rx.waitFor(() => of('member_removed', CH, 'flapper').length === 1, VACATED_WAIT, 'member_removed flapper');
      assertDelay(of('member_removed', CH, 'flapper')[0], leftAt, 'member_removed of flapper');
      assert.deepEqual(of('member_removed', CH).map(plain), [
        { name: 'member_removed', channel: CH, user_id: 'leaver' },
        { name: 'member_removed', channel: CH, user_id: 'flapper' },
      ]);
    };

    await Promise.all([channels(), members()]);
    await settle(300);
    assert.deepEqual(pairs(rx.events('/hook').filter((e) => e.channel === 'wh-steady')),
      [['channel_occupied', 'wh-steady'], ['channel_vacated', 'wh-steady']], rx.report());
    assert.deepEqual(pairs(rx.events('/hook').filter((e) => e.channel === 'wh-flap')),
      [['channel_occupied', 'wh-flap'], ['channel_vacated', 'wh-flap']], rx.report());
  });

  test('filters: event_types, channel_prefix and channel_suffix pick what each webhook gets', T, async (t) => {
    const { rx, connect } = await setup(t, {
      webhooks: (rx) => [
        { url: rx.url('/all'), event_types: ALL_TYPES },
        { url: rx.url('/occupied-only'), event_types: ['channel_occupied'] },
        { url: rx.url('/prefix'), event_types: ['channel_occupied', 'cache_miss'], filter: { channel_prefix: 'orders-' } },
        { url: rx.url('/suffix'), event_types: ['channel_occupied', 'cache_miss'], filter: { channel_suffix: '-eu' } },
      ],
    });
    const p = await connect();
    const CHS = ['orders-1', 'news-eu', 'misc', 'cache-eu'];
    for (const ch of CHS) {
      if (ch.startsWith('cache-')) await h.once(p.subscribe(ch), 'pusher:cache_miss');
      else await h.subscribe(p, ch);
    }
    await rx.waitForEvents('/all', (e) => e.name === 'channel_occupied', 4, 5000, '4 occupied at /all');
    await rx.waitForEvent('/all', 'cache_miss', 'cache-eu');
    await rx.waitForEvents('/occupied-only', () => true, 4, 5000, '4 events at /occupied-only');
    await rx.waitForEvent('/prefix', 'channel_occupied', 'orders-1');
    await rx.waitForEvents('/suffix', () => true, 3, 5000, '3 events at /suffix');
    await settle();
    const sorted = (evs) => pairs(evs).sort((x, y) => (x.join() < y.join() ? -1 : 1));
    assert.deepEqual(sorted(rx.events('/occupied-only')), sorted(CHS.map((c) => ({ name: 'channel_occupied', channel: c }))),
      `event_types [channel_occupied]:\n${rx.report()}`);
    assert.deepEqual(pairs(rx.events('/prefix')), [['channel_occupied', 'orders-1']], `prefix orders-:\n${rx.report()}`);
    assert.deepEqual(sorted(rx.events('/suffix')),
      [['cache_miss', 'cache-eu'], ['channel_occupied', 'cache-eu'], ['channel_occupied', 'news-eu']],
      `suffix -eu:\n${rx.report()}`);
    const allNames = new Set(rx.events('/all').map((e) => e.name));
    for (const n of ['channel_occupied', 'cache_miss']) assert.ok(allNames.has(n), `/all got ${[...allNames]}`);
  });

  for (const [how, opts] of [
    ['config file webhooks.batching', { config: { webhooks: { batching: { enabled: true, duration: 400 } } } }],
    ['env WEBHOOK_BATCHING_ENABLED/DURATION', { env: { WEBHOOK_BATCHING_ENABLED: 'true', WEBHOOK_BATCHING_DURATION: '400' } }],
  ]) {
    test(`batching (${how}): events within the window arrive together in one request`, T, async (t) => {
      const { rx, connect } = await setup(t, {
        ...opts,
        webhooks: (rx) => [{ url: rx.url('/hook'), event_types: ['channel_occupied'] }],
      });
      const p = await connect();
      const CHS = ['b-1', 'b-2', 'b-3', 'b-4', 'b-5', 'b-6'];
      await Promise.all(CHS.map((ch) => h.subscribe(p, ch)));
      await rx.waitForEvents('/hook', (e) => e.name === 'channel_occupied', CHS.length, 5000, `${CHS.length} occupied`);
      await settle();
      const reqs = rx.requestsTo('/hook');
      assert.ok(reqs.some((q) => q.events.length > 1), `no request carried more than one event:\n${rx.report()}`);
      assert.ok(reqs.length < CHS.length, `${reqs.length} requests for ${CHS.length} events:\n${rx.report()}`);
      assert.deepEqual(rx.events('/hook').map((e) => e.channel).sort(), CHS, `each channel exactly once:\n${rx.report()}`);
      for (const e of rx.events('/hook')) assert.deepEqual(plain(e), { name: 'channel_occupied', channel: e.channel });
    });
  }

  test('retries: after a 500 or a 429 the same event is delivered again ~1 s later, validly signed', T, async (t) => {
    const { rx, connect } = await setup(t, {
      respond: (req, n) => (n === 0 ? { '/fail500': 500, '/fail429': 429 }[req.path] ?? 200 : 200),
      webhooks: (rx) => [
        { url: rx.url('/fail500'), event_types: ['channel_occupied'] },
        { url: rx.url('/fail429'), event_types: ['channel_occupied'] },
      ],
    });
    const p = await connect();
    await h.subscribe(p, 'wh-retry');
    for (const path of ['/fail500', '/fail429']) {
      await rx.waitFor(() => rx.requestsTo(path).length >= 2, 8000, `a retry at ${path}`);
    }
    await settle();
    for (const [path, status] of [['/fail500', 500], ['/fail429', 429]]) {
      const reqs = rx.requestsTo(path);
      assert.equal(reqs.length, 2, `${path}: one failed attempt and one retry, nothing after the success:\n${rx.report()}`);
      assert.deepEqual(reqs.map((q) => q.status), [status, 200]);
      for (const q of reqs) {
        assert.equal(q.valid, true);
        assert.deepEqual(q.events, [{ name: 'channel_occupied', channel: 'wh-retry' }], `${path}: ${q.rawBody}`);
      }
      const gap = reqs[1].receivedAt - reqs[0].receivedAt;
      assert.ok(gap >= 500 && gap <= 5000, `${path}: first retry ${gap} ms after the failure; want ~1 s`);
    }
  });

  test('a webhook URL on a closed port does not disturb the server: clients get events, other webhooks still deliver', T, async (t) => {
    const closedPort = await h.freePort(); // nothing listens there
    const { rx, api, connect } = await setup(t, {
      webhooks: (rx) => [
        { url: `http://127.0.0.1:${closedPort}/hook`, event_types: ALL_TYPES },
        { url: rx.url('/ok'), event_types: ['channel_occupied'] },
      ],
    });
    const a = await connect();
    const b = await connect();
    const chA = await h.subscribe(a, 'wh-dead');
    const chB = await h.subscribe(b, 'wh-dead');
    const got = [h.once(chA, 'ev'), h.once(chB, 'ev')];
    assert.equal((await api.trigger('wh-dead', 'ev', { n: 1 })).status, 200);
    assert.deepEqual(await Promise.all(got), [{ n: 1 }, { n: 1 }]);
    await rx.waitForEvent('/ok', 'channel_occupied', 'wh-dead');

    // While the dead URL is being retried (first retry after ~1 s), the server keeps serving.
    await h.sleep(1500);
    const c = await connect();
    const chC = await h.subscribe(c, 'wh-dead-2');
    const gotC = h.once(chC, 'ev2');
    assert.equal((await api.trigger('wh-dead-2', 'ev2', 'x')).status, 200);
    assert.equal(await gotC, 'x');
    await rx.waitForEvent('/ok', 'channel_occupied', 'wh-dead-2');
    // The clean-up asserts the server still exits 0 on SIGTERM with deliveries pending.
  });
});
