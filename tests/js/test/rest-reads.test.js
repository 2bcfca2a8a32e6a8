'use strict';
// REST reads through the Node SDK: /channels, /channels/{name},
// /channels/{name}/users, trigger/triggerBatch `info`, with subscribers on
// both shards; every read is repeated on fresh connections so both shards
// answer, and each must give the whole-server answer.

const { describe, test, before, after, afterEach } = require('node:test');
const assert = require('node:assert/strict');
const http = require('node:http');
const h = require('./helpers');
const r = require('./raw');

const T = { timeout: 20000 };

describe('REST reads (SHARDS=2)', () => {
  let server;
  let api;
  let signer;
  const raws = [];
  const shards = async (count = 1) => {
    const m = await r.perShard(server.port, count);
    for (const l of m.values()) raws.push(...l);
    return m;
  };
  /** GET via the SDK until both shards have answered (>= 6 calls); returns the bodies, asserting they agree. */
  const readAll = async (path, params = {}) => {
    const seen = new Set();
    const bodies = [];
    for (let i = 0; i < 40 && (seen.size < 2 || i < 6); i++) {
      const res = await api.get({ path, params });
      assert.equal(res.status, 200);
      seen.add(res.headers.get('x-sockudo-shard'));
      bodies.push(await res.json());
    }
    assert.deepEqual([...seen].sort(), ['0', '1'], `${path} never answered by both shards`);
    for (const b of bodies) assert.deepEqual(b, bodies[0], `${path} answers differ between calls/shards`);
    return bodies[0];
  };
  const getStatus = async (path, params = {}) => {
    try {
      const res = await api.get({ path, params });
      return { status: res.status, body: await res.text() };
    } catch (e) {
      return { status: e.status, body: e.body };
    }
  };

  before(async () => {
    server = await h.startServer();
    api = h.sdk(server.port, h.APP, { agent: new http.Agent({ keepAlive: false }) });
    signer = h.sdk(server.port);
  });
  afterEach(() => {
    while (raws.length) raws.pop().ws.close();
  });
  after(async () => {
    const res = await server.stop();
    assert.equal(res.code, 0, `server exit ${JSON.stringify(res)}\n${server.logs()}`);
  });

  test('/channels, /channels/{name}, /channels/{name}/users with members on both shards', T, async () => {
    const byShard = await shards(2);
    const [a0, b0] = byShard.get('0');
    const [a1, b1] = byShard.get('1');
    await r.rawPresence(signer, a0, 'presence-lobby', 'alice', { x: 1 });
    await r.rawPresence(signer, a1, 'presence-lobby', 'bob', {});
    await r.rawPresence(signer, b1, 'presence-lobby', 'alice', { x: 1 }); // 2nd socket of alice
    await r.rawSubscribe(b0, 'news');
    await r.rawSubscribe(b1, 'news');
    await r.rawPrivate(signer, b0, 'private-only0');

    const all = await readAll('/channels');
    assert.deepEqual(Object.keys(all.channels).sort(), ['news', 'presence-lobby', 'private-only0']);

    const pres = await readAll('/channels', { filter_by_prefix: 'presence-', info: 'user_count' });
    assert.deepEqual(pres, { channels: { 'presence-lobby': { user_count: 2 } } });

    const subs = await readAll('/channels', { info: 'subscription_count' });
    assert.equal(subs.channels.news.subscription_count, 2, JSON.stringify(subs));
    assert.equal(subs.channels['presence-lobby'].subscription_count, 3, JSON.stringify(subs));

    const bad = await getStatus('/channels', { info: 'user_count' });
    assert.equal(bad.status, 400, `user_count without presence- prefix: ${JSON.stringify(bad)}`);
    const bad2 = await getStatus('/channels', { filter_by_prefix: 'private-', info: 'user_count' });
    assert.equal(bad2.status, 400, JSON.stringify(bad2));

    const one = await readAll('/channels/presence-lobby', { info: 'user_count,subscription_count' });
    assert.deepEqual(one, { occupied: true, user_count: 2, subscription_count: 3 });
    const news = await readAll('/channels/news', { info: 'subscription_count' });
    assert.deepEqual(news, { occupied: true, subscription_count: 2 });
    const empty = await readAll('/channels/nobody-here');
    assert.equal(empty.occupied, false, JSON.stringify(empty));
    const badOne = await getStatus('/channels/news', { info: 'user_count' });
    assert.equal(badOne.status, 400, `user_count on a public channel: ${JSON.stringify(badOne)}`);

    const users = await readAll('/channels/presence-lobby/users');
    assert.deepEqual(users.users.map((u) => u.id).sort(), ['alice', 'bob']);
    const notPres = await getStatus('/channels/news/users');
    assert.equal(notPres.status, 400, JSON.stringify(notPres));

    // Leaving updates the answers everywhere.
    a1.ws.close();
    b1.ws.close();
    // The closes are processed asynchronously: wait until the counts drop, then check every answer.
    const lobby = { path: '/channels/presence-lobby', params: { info: 'user_count,subscription_count' } };
    for (const deadline = Date.now() + 5000; Date.now() < deadline;) {
      const b = await (await api.get(lobby)).json();
      if (b.user_count === 1 && b.subscription_count === 1) break;
      await h.sleep(50);
    }
    assert.deepEqual(await readAll(lobby.path, lobby.params), { occupied: true, user_count: 1, subscription_count: 1 });
    assert.deepEqual((await readAll('/channels/presence-lobby/users')).users, [{ id: 'alice' }]);
    assert.deepEqual(await readAll('/channels/news', { info: 'subscription_count' }),
      { occupied: true, subscription_count: 1 });
  });

  test('trigger with info answers subscription_count / user_count per channel', T, async () => {
    const byShard = await shards(2);
    const [a0, b0] = byShard.get('0');
    const [a1] = byShard.get('1');
    await r.rawSubscribe(a0, 'ticker');
    await r.rawSubscribe(a1, 'ticker');
    await r.rawSubscribe(b0, 'ticker');
    await r.rawPresence(signer, a0, 'presence-t', 'p1', {});
    await r.rawPresence(signer, a1, 'presence-t', 'p2', {});
    for (let i = 0; i < 6; i++) {
      const res = await api.trigger('ticker', 'tick', { i }, { info: 'subscription_count' });
      assert.equal(res.status, 200);
      assert.deepEqual(await res.json(), { channels: { ticker: { subscription_count: 3 } } });
    }
    const multi = await api.trigger(['ticker', 'presence-t', 'empty-chan'], 'tick', {}, { info: 'subscription_count' });
    const body = await multi.json();
    assert.deepEqual(body.channels.ticker, { subscription_count: 3 }, JSON.stringify(body));
    assert.deepEqual(body.channels['presence-t'], { subscription_count: 2 }, JSON.stringify(body));
    assert.equal(body.channels['empty-chan']?.subscription_count ?? 0, 0, JSON.stringify(body));
    const pres = await api.trigger('presence-t', 'tick', {}, { info: 'user_count,subscription_count' });
    assert.deepEqual(await pres.json(), { channels: { 'presence-t': { user_count: 2, subscription_count: 2 } } });

    const batch = await api.triggerBatch([
      { channel: 'ticker', name: 'b', data: '1', info: 'subscription_count' },
      { channel: 'empty-chan', name: 'b', data: '2' },
      { channel: 'presence-t', name: 'b', data: '3', info: 'user_count,subscription_count' },
    ]);
    const bb = await batch.json();
    assert.equal(bb.batch.length, 3, JSON.stringify(bb));
    assert.deepEqual(bb.batch[0], { subscription_count: 3 });
    assert.deepEqual(bb.batch[1], {});
    assert.deepEqual(bb.batch[2], { user_count: 2, subscription_count: 2 });
  });
});
