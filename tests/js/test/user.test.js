'use strict';
// User sign-in: pusher-js signin() with the Node SDK's authenticateUser, the
// #server-to-user-{id} channel, sendToUser across shards, foreign
// subscriptions refused, terminateUserConnections (4009).

const { describe, test, before, after, afterEach } = require('node:test');
const assert = require('node:assert/strict');
const h = require('./helpers');
const r = require('./raw');

const T = { timeout: 20000 };

describe('user sign-in (SHARDS=2)', () => {
  let server;
  let api;
  const clients = [];
  const raws = [];
  const signedInClient = async (user) => {
    const p = await h.connectedClient(server.port, h.APP.key, {
      userAuthentication: { customHandler: ({ socketId }, cb) => cb(null, api.authenticateUser(socketId, user)) },
    });
    clients.push(p);
    p.signin();
    await h.until(() => p.user.user_data && p.user.serverToUserChannel?.subscribed, 5000, `signin of ${user.id}`);
    return p;
  };
  const shards = async (count = 1) => {
    const m = await r.perShard(server.port, count);
    for (const l of m.values()) raws.push(...l);
    return m;
  };
  const rawSignin = async (c, user, signer = api) => {
    const from = c.messages.length;
    c.send({ event: 'pusher:signin', data: signer.authenticateUser(c.socketId, user) });
    return c.next((m) => c.messages.indexOf(m) >= from &&
      (m.event === 'pusher:signin_success' || m.event === 'pusher:error'));
  };
  const userChan = (id) => `#server-to-user-${id}`;

  before(async () => {
    server = await h.startServer();
    api = h.sdk(server.port);
  });
  afterEach(() => {
    while (clients.length) clients.pop().disconnect();
    while (raws.length) raws.pop().ws.close();
  });
  after(async () => {
    const res = await server.stop();
    assert.equal(res.code, 0, `server exit ${JSON.stringify(res)}\n${server.logs()}`);
  });

  test('pusher-js signin() then pusher.user.bind receives sendToUser', T, async () => {
    const p = await signedInClient({ id: 'u1', name: 'One' });
    assert.equal(p.user.user_data.id, 'u1');
    const got = h.once(p.user, 'greet');
    const res = await api.sendToUser('u1', 'greet', { hello: 'u1' });
    assert.equal(res.status, 200);
    assert.deepEqual(await got, { hello: 'u1' });
  });

  test('sendToUser reaches every socket of the user on both shards, and no one else', T, async () => {
    const byShard = await shards(2);
    const [a0, other0] = byShard.get('0');
    const [a1, other1] = byShard.get('1');
    for (const c of [a0, a1]) {
      const ok = await rawSignin(c, { id: 'u2' });
      assert.equal(ok.event, 'pusher:signin_success', JSON.stringify(ok));
      assert.deepEqual(JSON.parse(ok.parsedData.user_data), { id: 'u2' });
      await r.rawSubscribe(c, userChan('u2'));
    }
    await rawSignin(other0, { id: 'u3' });
    await r.rawSubscribe(other0, userChan('u3'));
    const pjs = await signedInClient({ id: 'u2' });
    const pGot = h.once(pjs.user, 'note');
    await api.sendToUser('u2', 'note', { n: 1 });
    assert.deepEqual(await pGot, { n: 1 });
    for (const c of [a0, a1]) {
      const m = await c.next((x) => x.event === 'note');
      assert.equal(m.channel, userChan('u2'));
      assert.deepEqual(m.parsedData, { n: 1 });
    }
    await h.sleep(300);
    assert.equal(other0.messages.filter((m) => m.event === 'note').length, 0);
    assert.equal(other1.messages.filter((m) => m.event === 'note').length, 0);
  });

  test('#server-to-user-<id> is refused to a socket not signed in, or signed in as someone else', T, async () => {
    const byShard = await shards(2);
    const [anon, asU5] = byShard.get('0');
    const [owner] = byShard.get('1');
    await rawSignin(owner, { id: 'u4' });
    await r.rawSubscribe(owner, userChan('u4'));
    const e1 = await r.rawSubscribe(anon, userChan('u4'), {}, { expectOk: false });
    assert.equal(e1.event, 'pusher:error', `anonymous socket: ${JSON.stringify(e1)}`);
    const ok5 = await rawSignin(asU5, { id: 'u5' });
    assert.equal(ok5.event, 'pusher:signin_success');
    const e2 = await r.rawSubscribe(asU5, userChan('u4'), {}, { expectOk: false });
    assert.equal(e2.event, 'pusher:error', `socket signed in as u5: ${JSON.stringify(e2)}`);
    await api.sendToUser('u4', 'private-note', { secret: true });
    await owner.next((m) => m.event === 'private-note');
    await h.sleep(300);
    for (const c of [anon, asU5]) {
      assert.equal(c.messages.filter((m) => m.event === 'private-note').length, 0, 'foreign socket got the event');
      assert.equal(c.closeInfo(), null);
    }
  });

  test('signin with a bad signature is refused with pusher:error', T, async () => {
    const [c] = (await shards()).get('0');
    const wrong = h.sdk(server.port, { ...h.APP, secret: 'bad' });
    const res = await rawSignin(c, { id: 'u6' }, wrong);
    assert.equal(res.event, 'pusher:error', JSON.stringify(res));
    const e = await r.rawSubscribe(c, userChan('u6'), {}, { expectOk: false });
    assert.equal(e.event, 'pusher:error', `subscribed to the user channel after failed signin: ${JSON.stringify(e)}`);
  });

  test('terminateUserConnections closes every socket of the user (4009) on both shards, and no other', T, async () => {
    const byShard = await shards(2);
    const [v0, w0] = byShard.get('0');
    const [v1, w1] = byShard.get('1');
    for (const c of [v0, v1]) assert.equal((await rawSignin(c, { id: 'victim' })).event, 'pusher:signin_success');
    assert.equal((await rawSignin(w0, { id: 'bystander' })).event, 'pusher:signin_success');
    // Raw sockets only: a pusher-js client closed by the server with 4009 leaves faye-websocket's
    // 30 s close timer armed (pusher-js calls close() on the already closed socket), which would
    // keep this test process alive for 30 s.

    const res = await api.terminateUserConnections('victim');
    assert.equal(res.status, 200);
    for (const c of [v0, v1]) {
      const closed = await Promise.race([c.closed, h.sleep(5000).then(() => null)]);
      assert.ok(closed, `socket on shard ${c.shard} not closed`);
      assert.equal(closed.code, 4009, `close code on shard ${c.shard}`);
      const err = c.messages.find((m) => m.event === 'pusher:error');
      assert.ok(err, `no pusher:error before close on shard ${c.shard}`);
      assert.equal(err.parsedData?.code ?? err.data?.code, 4009, JSON.stringify(err));
    }
    await h.sleep(300);
    assert.equal(w0.closeInfo(), null, 'bystander (signed in) closed');
    assert.equal(w1.closeInfo(), null, 'anonymous socket closed');
    // The bystander still works.
    await r.rawSubscribe(w0, 'after-terminate');
  });
});
