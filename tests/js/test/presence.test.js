'use strict';
// Presence channels: pusher-js with auth from the Node SDK's authorizeChannel
// (channel_data with user_id / user_info), members across both shards,
// member_added / member_removed once per user, limits.

const { describe, test, before, after, afterEach } = require('node:test');
const assert = require('node:assert/strict');
const h = require('./helpers');
const r = require('./raw');

const T = { timeout: 20000 };
const LIM = { id: '125', key: 'lim-key', secret: 'lim-secret' };

describe('presence channels (SHARDS=2)', () => {
  let server;
  let api;
  let limApi;
  const clients = [];
  const raws = [];
  const connect = async (userId, userInfo) => {
    const p = await h.connectedClient(server.port, h.APP.key, {
      channelAuthorization: r.presenceAuthorizer(api, userId, userInfo),
    });
    clients.push(p);
    return p;
  };
  const track = (byShard) => {
    for (const l of byShard.values()) raws.push(...l);
    return byShard;
  };

  before(async () => {
    server = await h.startServer({
      apps: [h.DEFAULT_APPS[0], { ...LIM, enabled: true, max_presence_members_per_channel: 3 }],
    });
    api = h.sdk(server.port);
    limApi = h.sdk(server.port, LIM);
  });
  afterEach(() => {
    while (clients.length) clients.pop().disconnect();
    while (raws.length) raws.pop().ws.close();
  });
  after(async () => {
    const res = await server.stop();
    assert.equal(res.code, 0, `server exit ${JSON.stringify(res)}\n${server.logs()}`);
  });

  test('raw: subscription_succeeded lists members on both shards; member_added/removed cross shards', T, async () => {
    const byShard = track(await r.perShard(server.port));
    const a = byShard.get('0')[0];
    const b = byShard.get('1')[0];
    const okA = await r.rawPresence(api, a, 'presence-x1', 'alice', { name: 'Alice' });
    assert.deepEqual(okA.parsedData, { presence: { ids: ['alice'], hash: { alice: { name: 'Alice' } }, count: 1 } });

    const okB = await r.rawPresence(api, b, 'presence-x1', 'bob', { name: 'Bob' });
    const pres = okB.parsedData.presence;
    assert.equal(pres.count, 2, JSON.stringify(okB));
    assert.deepEqual([...pres.ids].sort(), ['alice', 'bob']);
    assert.deepEqual(pres.hash, { alice: { name: 'Alice' }, bob: { name: 'Bob' } });

    const added = await a.next((m) => m.event === 'pusher_internal:member_added' && m.channel === 'presence-x1');
    assert.deepEqual(added.parsedData, { user_id: 'bob', user_info: { name: 'Bob' } });
    await h.sleep(200);
    assert.deepEqual(r.eventsOf(b, 'presence-x1', 'pusher_internal:member_added'), [], 'joining socket got its own member_added');

    b.ws.close();
    const removed = await a.next((m) => m.event === 'pusher_internal:member_removed' && m.channel === 'presence-x1');
    assert.deepEqual(removed.parsedData, { user_id: 'bob' });
  });

  test('pusher-js: members list and count, member_added / member_removed on other clients', T, async () => {
    const p1 = await connect('u1', { n: 1 });
    const ch1 = await h.subscribe(p1, 'presence-js');
    assert.equal(ch1.members.count, 1);
    assert.equal(ch1.members.me.id, 'u1');
    assert.deepEqual(ch1.members.me.info, { n: 1 });

    const added = [];
    ch1.bind('pusher:member_added', (m) => added.push(m));
    const removed = [];
    ch1.bind('pusher:member_removed', (m) => removed.push(m));

    // Several more clients: with 4 connections the kernel spreads them over both shards
    // almost surely (the raw test above proves cross-shard membership deterministically).
    const others = [];
    for (let i = 2; i <= 4; i++) {
      const p = await connect(`u${i}`, { n: i });
      const ch = await h.subscribe(p, 'presence-js');
      others.push({ p, ch, id: `u${i}` });
      assert.equal(ch.members.count, i, `u${i} sees count`);
      const seen = {};
      ch.members.each((m) => (seen[m.id] = m.info));
      const want = {};
      for (let k = 1; k <= i; k++) want[`u${k}`] = { n: k };
      assert.deepEqual(seen, want, `u${i} members list`);
      assert.equal(ch.members.me.id, `u${i}`);
    }
    await h.until(() => added.length === 3, 5000, 'member_added x3');
    assert.deepEqual(added.map((m) => [m.id, m.info]), [['u2', { n: 2 }], ['u3', { n: 3 }], ['u4', { n: 4 }]]);
    assert.equal(ch1.members.count, 4);

    others[0].p.unsubscribe('presence-js');
    others[1].p.disconnect();
    await h.until(() => removed.length === 2, 5000, 'member_removed x2');
    assert.deepEqual(removed.map((m) => m.id).sort(), ['u2', 'u3']);
    assert.equal(ch1.members.count, 2);
    assert.equal(others[2].ch.members.count, 2);
  });

  test('two sockets of one user on different shards: one member_added, member_removed only after the last', T, async () => {
    const byShard = track(await r.perShard(server.port, 2));
    const [obs, u0] = byShard.get('0');
    const [u1, late] = byShard.get('1');
    await r.rawPresence(api, obs, 'presence-dup', 'observer', {});
    await r.rawPresence(api, u0, 'presence-dup', 'same', { s: 1 });
    await obs.next((m) => m.event === 'pusher_internal:member_added' && m.parsedData?.user_id === 'same');
    const ok = await r.rawPresence(api, u1, 'presence-dup', 'same', { s: 1 });
    assert.equal(ok.parsedData.presence.count, 2, JSON.stringify(ok));
    assert.deepEqual([...ok.parsedData.presence.ids].sort(), ['observer', 'same']);
    // A later member sees the user once.
    const okLate = await r.rawPresence(api, late, 'presence-dup', 'late', {});
    assert.equal(okLate.parsedData.presence.count, 3, JSON.stringify(okLate));
    assert.deepEqual([...okLate.parsedData.presence.ids].sort(), ['late', 'observer', 'same']);
    await h.sleep(300);
    const addedSame = r.eventsOf(obs, 'presence-dup', 'pusher_internal:member_added').filter((d) => d.user_id === 'same');
    assert.equal(addedSame.length, 1, 'member_added sent once per user, not per socket');
    assert.deepEqual(r.eventsOf(u1, 'presence-dup', 'pusher_internal:member_added')
      .filter((d) => d.user_id === 'same'), [], 'second socket of the user told about itself');

    u0.send({ event: 'pusher:unsubscribe', data: { channel: 'presence-dup' } });
    await h.sleep(400);
    assert.deepEqual(r.eventsOf(obs, 'presence-dup', 'pusher_internal:member_removed'), [],
      'member_removed while the user still has a socket in the channel');
    u1.ws.close();
    const rem = await obs.next((m) => m.event === 'pusher_internal:member_removed');
    assert.deepEqual(rem.parsedData, { user_id: 'same' });
    await h.sleep(200);
    assert.equal(r.eventsOf(obs, 'presence-dup', 'pusher_internal:member_removed').length, 1);
  });

  test('numeric user_id is reported as a string', T, async () => {
    const byShard = track(await r.perShard(server.port));
    const a = byShard.get('0')[0];
    const b = byShard.get('1')[0];
    await r.rawPresence(api, a, 'presence-num', 42, { k: 'v' });
    const ok = await r.rawPresence(api, b, 'presence-num', 'x', null);
    assert.deepEqual([...ok.parsedData.presence.ids].sort(), ['42', 'x'], JSON.stringify(ok));
    assert.ok(Object.hasOwn(ok.parsedData.presence.hash, '42'));
    const added = await a.next((m) => m.event === 'pusher_internal:member_added');
    assert.equal(added.parsedData.user_id, 'x');
    b.ws.close();
    a.ws.close();
    const c = track(await r.perShard(server.port)).get('1')[0];
    const d = track(await r.perShard(server.port)).get('0')[0];
    await r.rawPresence(api, c, 'presence-num2', 'obs', {});
    await r.rawPresence(api, d, 'presence-num2', 7, {});
    const add7 = await c.next((m) => m.event === 'pusher_internal:member_added');
    assert.strictEqual(add7.parsedData.user_id, '7');
    d.ws.close();
    const rem7 = await c.next((m) => m.event === 'pusher_internal:member_removed');
    assert.strictEqual(rem7.parsedData.user_id, '7');
  });

  test('max_presence_members_per_channel (3, across shards): the 4th user gets pusher:error with the channel', T, async () => {
    const byShard = track(await r.perShard(server.port, 3, ['0', '1'], LIM.key));
    const s0 = byShard.get('0');
    const s1 = byShard.get('1');
    await r.rawPresence(limApi, s0[0], 'presence-full', 'm1', {});
    await r.rawPresence(limApi, s1[0], 'presence-full', 'm2', {});
    await r.rawPresence(limApi, s0[1], 'presence-full', 'm3', {});
    // Another socket of an existing member does not add a member: accepted.
    const again = await r.rawPresence(limApi, s1[1], 'presence-full', 'm1', {}, { expectOk: false });
    assert.equal(again.event, 'pusher_internal:subscription_succeeded', `existing user refused: ${JSON.stringify(again)}`);
    const err = await r.rawPresence(limApi, s1[2], 'presence-full', 'm4', {}, { expectOk: false });
    assert.equal(err.event, 'pusher:error', JSON.stringify(err));
    assert.equal(err.channel, 'presence-full', `error names the channel: ${JSON.stringify(err)}`);
    assert.ok(err.parsedData?.message || err.data?.message, JSON.stringify(err));
    await h.sleep(300);
    assert.deepEqual(r.eventsOf(s0[0], 'presence-full', 'pusher_internal:member_added')
      .filter((d) => d.user_id === 'm4'), [], 'refused member announced');
    // The connection stays up and can subscribe elsewhere.
    await r.rawSubscribe(s1[2], 'after-refusal');
    assert.equal(s1[2].closeInfo(), null);
  });

  test('user_info over max_presence_member_size_in_kb (1) gets pusher:error with the channel', T, async () => {
    const byShard = track(await r.perShard(server.port));
    const c = byShard.get('0')[0];
    const err = await r.rawPresence(api, c, 'presence-big', 'big', { blob: 'x'.repeat(2000) }, { expectOk: false });
    assert.equal(err.event, 'pusher:error', JSON.stringify(err));
    assert.equal(err.channel, 'presence-big', JSON.stringify(err));
    const ok = await r.rawPresence(api, c, 'presence-big', 'small', { blob: 'x'.repeat(500) }, { expectOk: false });
    assert.equal(ok.event, 'pusher_internal:subscription_succeeded', JSON.stringify(ok));
  });

  test('pusher-js: bad presence auth (wrong secret) is refused', T, async () => {
    const wrong = h.sdk(server.port, { ...h.APP, secret: 'nope' });
    const p = await h.connectedClient(server.port, h.APP.key, {
      channelAuthorization: r.presenceAuthorizer(wrong, 'evil', {}),
    });
    clients.push(p);
    const errors = [];
    p.connection.bind('error', (e) => errors.push(e));
    const ch = p.subscribe('presence-guarded');
    await h.until(() => errors.length > 0, 5000, 'pusher:error');
    assert.equal(ch.subscribed, false);
    assert.equal(p.connection.state, 'connected');
  });
});
