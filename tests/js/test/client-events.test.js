'use strict';
// Client events (client-*): pusher-js channel.trigger on private / presence
// channels, delivered to the other members on both shards, never echoed;
// refusals (public channel, not joined, disabled app, encrypted channel) and
// the per-connection rate limit (pusher:error 4301, connection stays).

const { describe, test, before, after, afterEach } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const h = require('./helpers');
const r = require('./raw');

const T = { timeout: 20000 };
const NOCLIENT = { id: '126', key: 'noclient-key', secret: 'noclient-secret' };
const MASTER = crypto.randomBytes(32).toString('base64');

describe('client events (SHARDS=2)', () => {
  let server;
  let api;
  const clients = [];
  const raws = [];
  const connect = async (extra) => {
    const p = await h.connectedClient(server.port, h.APP.key, extra);
    clients.push(p);
    return p;
  };
  const shards = async (count = 1, key) => {
    const m = await r.perShard(server.port, count, ['0', '1'], key);
    for (const l of m.values()) raws.push(...l);
    return m;
  };
  const isErr = (m) => m.event === 'pusher:error';

  before(async () => {
    server = await h.startServer({
      apps: [h.DEFAULT_APPS[0], { ...NOCLIENT, enabled: true, enable_client_messages: false }],
    });
    api = h.sdk(server.port, h.APP, { encryptionMasterKeyBase64: MASTER });
  });
  afterEach(() => {
    while (clients.length) clients.pop().disconnect();
    while (raws.length) raws.pop().ws.close();
  });
  after(async () => {
    const res = await server.stop();
    assert.equal(res.code, 0, `server exit ${JSON.stringify(res)}\n${server.logs()}`);
  });

  test('pusher-js trigger on a private channel reaches raw members on both shards, not the sender', T, async () => {
    const byShard = await shards();
    const a = byShard.get('0')[0];
    const b = byShard.get('1')[0];
    await r.rawPrivate(api, a, 'private-chat');
    await r.rawPrivate(api, b, 'private-chat');
    const p = await connect({ channelAuthorization: r.privateAuthorizer(api) });
    const ch = await h.subscribe(p, 'private-chat');
    const echoed = h.collect(ch, 'client-msg');
    assert.equal(ch.trigger('client-msg', { text: 'hi' }), true);
    for (const c of [a, b]) {
      const m = await c.next((x) => x.event === 'client-msg');
      assert.equal(m.channel, 'private-chat');
      assert.deepEqual(m.parsedData ?? m.data, { text: 'hi' });
      assert.equal(m.user_id, undefined, 'user_id on a private channel');
    }
    // Raw sender on shard 0 -> pusher-js and shard 1 get it, the sender does not.
    const got = h.once(ch, 'client-raw');
    a.send({ event: 'client-raw', channel: 'private-chat', data: { from: 'a' } });
    assert.deepEqual(await got, { from: 'a' });
    const onB = await b.next((x) => x.event === 'client-raw');
    assert.deepEqual(onB.parsedData ?? onB.data, { from: 'a' });
    await h.sleep(300);
    assert.deepEqual(echoed, [], 'pusher-js sender got its own client event');
    assert.deepEqual(r.eventsOf(a, 'private-chat', 'client-raw'), [], 'raw sender got its own client event');
    assert.equal(a.messages.filter(isErr).length, 0, JSON.stringify(a.messages));
  });

  test('presence: receivers get user_id (metadata.user_id in pusher-js), across shards', T, async () => {
    const byShard = await shards();
    const a = byShard.get('0')[0];
    const b = byShard.get('1')[0];
    await r.rawPresence(api, a, 'presence-chat', 'ua', {});
    const p = await connect({ channelAuthorization: r.presenceAuthorizer(api, 'upj', {}) });
    const ch = await h.subscribe(p, 'presence-chat');
    const mine = h.collect(ch, 'client-typing');
    await r.rawPresence(api, b, 'presence-chat', 'ub', {});

    const meta = new Promise((resolve) => ch.bind('client-from-b', (data, metadata) => resolve({ data, metadata })));
    b.send({ event: 'client-from-b', channel: 'presence-chat', data: { typing: true } });
    const got = await Promise.race([meta, h.sleep(5000).then(() => null)]);
    assert.ok(got, 'pusher-js did not get the client event');
    assert.deepEqual(got.data, { typing: true });
    assert.equal(got.metadata.user_id, 'ub');
    const onA = await a.next((x) => x.event === 'client-from-b');
    assert.equal(onA.user_id, 'ub');

    ch.trigger('client-typing', { t: 1 });
    for (const c of [a, b]) {
      const m = await c.next((x) => x.event === 'client-typing');
      assert.equal(m.user_id, 'upj', JSON.stringify(m));
      assert.deepEqual(m.parsedData ?? m.data, { t: 1 });
    }
    await h.sleep(300);
    assert.deepEqual(mine, [], 'sender got its own client event');
  });

  test('refused on a public channel: pusher:error, nothing delivered, connection stays', T, async () => {
    const byShard = await shards();
    const a = byShard.get('0')[0];
    const b = byShard.get('1')[0];
    await r.rawSubscribe(a, 'public-chat');
    await r.rawSubscribe(b, 'public-chat');
    a.send({ event: 'client-x', channel: 'public-chat', data: { no: 1 } });
    const err = await a.next(isErr);
    assert.ok(err.parsedData?.message ?? err.data?.message, JSON.stringify(err));
    // pusher-js does not refuse it itself; the server must.
    const p = await connect();
    const ch = await h.subscribe(p, 'public-chat');
    ch.trigger('client-x', { no: 2 });
    await h.sleep(400);
    assert.deepEqual(r.eventsOf(b, 'public-chat', 'client-x'), [], 'client event delivered on a public channel');
    assert.equal(a.closeInfo(), null);
    assert.equal(p.connection.state, 'connected');
  });

  test('refused on a channel the sender has not joined', T, async () => {
    const byShard = await shards();
    const a = byShard.get('0')[0];
    const b = byShard.get('1')[0];
    await r.rawPrivate(api, b, 'private-notjoined');
    a.send({ event: 'client-x', channel: 'private-notjoined', data: { sneaky: 1 } });
    const err = await a.next(isErr);
    assert.ok(err, 'no pusher:error');
    await h.sleep(300);
    assert.deepEqual(r.eventsOf(b, 'private-notjoined', 'client-x'), []);
    assert.equal(a.closeInfo(), null);
  });

  test('refused when the app has enable_client_messages: false', T, async () => {
    const nApi = h.sdk(server.port, NOCLIENT);
    const byShard = await shards(1, NOCLIENT.key);
    const a = byShard.get('0')[0];
    const b = byShard.get('1')[0];
    await r.rawPrivate(nApi, a, 'private-off');
    await r.rawPrivate(nApi, b, 'private-off');
    a.send({ event: 'client-x', channel: 'private-off', data: { off: 1 } });
    const err = await a.next(isErr);
    assert.ok(err, 'no pusher:error');
    await h.sleep(300);
    assert.deepEqual(r.eventsOf(b, 'private-off', 'client-x'), []);
    assert.equal(a.closeInfo(), null);
  });

  test('refused on an encrypted channel (private-encrypted-*)', T, async () => {
    const byShard = await shards();
    const a = byShard.get('0')[0];
    const b = byShard.get('1')[0];
    await r.rawPrivate(api, a, 'private-encrypted-chat');
    await r.rawPrivate(api, b, 'private-encrypted-chat');
    a.send({ event: 'client-x', channel: 'private-encrypted-chat', data: { e: 1 } });
    const err = await a.next(isErr);
    assert.ok(err, 'no pusher:error');
    await h.sleep(300);
    assert.deepEqual(r.eventsOf(b, 'private-encrypted-chat', 'client-x'), []);
    assert.equal(a.closeInfo(), null);
  });

  test('rate limit (default 10/s): excess gets pusher:error 4301, connection stays, at most 10 delivered', T, async () => {
    const byShard = await shards();
    const a = byShard.get('0')[0];
    const b = byShard.get('1')[0];
    await r.rawPrivate(api, a, 'private-rate');
    await r.rawPrivate(api, b, 'private-rate');
    for (let i = 0; i < 20; i++) a.send({ event: 'client-burst', channel: 'private-rate', data: { i } });
    const err = await a.next(isErr);
    assert.equal(err.parsedData?.code ?? err.data?.code, 4301, JSON.stringify(err));
    await h.sleep(500);
    const got = r.eventsOf(b, 'private-rate', 'client-burst');
    assert.ok(got.length >= 1 && got.length <= 10, `delivered ${got.length} of 20 in a burst`);
    assert.deepEqual(got, got.map((_, i) => ({ i })), 'delivered ones are the first, in order');
    assert.equal(a.closeInfo(), null, 'connection closed by the rate limit');
    // After the window the sender may trigger again.
    await h.sleep(1100);
    a.send({ event: 'client-later', channel: 'private-rate', data: { ok: true } });
    const later = await b.next((m) => m.event === 'client-later');
    assert.deepEqual(later.parsedData ?? later.data, { ok: true });
  });
});
