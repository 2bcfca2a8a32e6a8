'use strict';
// laravel-echo (ESM, loaded with dynamic import()) on top of pusher-js:
// presence (join/here/joining/leaving), private channel listen, whisper.
// Auth through a custom authorizer that signs with the Node SDK, so no HTTP
// auth endpoint is needed.

const { describe, test, before, after, afterEach } = require('node:test');
const assert = require('node:assert/strict');
const h = require('./helpers');

const T = { timeout: 20000 };

describe('laravel-echo (broadcaster: pusher)', () => {
  let server;
  let api;
  let Echo;
  const echos = [];

  const makeEcho = (user) => {
    const echo = new Echo({
      broadcaster: 'pusher',
      key: h.APP.key,
      Pusher: h.PusherJS,
      wsHost: '127.0.0.1',
      wsPort: server.port,
      forceTLS: false,
      enabledTransports: ['ws'],
      cluster: 'x',
      enableStats: false,
      authorizer: (channel) => ({
        authorize: (socketId, cb) => {
          const data = channel.name.startsWith('presence-') ? { user_id: user.id, user_info: user } : undefined;
          cb(null, api.authorizeChannel(socketId, channel.name, data));
        },
      }),
    });
    echos.push(echo);
    return echo;
  };
  const connected = async (echo) => {
    await h.waitForState(echo.connector.pusher, 'connected');
    return echo;
  };

  before(async () => {
    ({ default: Echo } = await import('laravel-echo'));
    server = await h.startServer();
    api = h.sdk(server.port);
  });
  afterEach(() => {
    while (echos.length) echos.pop().disconnect();
  });
  after(async () => {
    const res = await server.stop();
    assert.equal(res.code, 0, `server exit ${JSON.stringify(res)}\n${server.logs()}`);
  });

  test('echo.join: here / joining / leaving', T, async () => {
    const e1 = await connected(makeEcho({ id: 'u1', name: 'Ann' }));
    const here1 = [];
    const joining = [];
    const leaving = [];
    e1.join('room')
      .here((members) => here1.push(members))
      .joining((m) => joining.push(m))
      .leaving((m) => leaving.push(m));
    await h.until(() => here1.length === 1, 5000, 'here() for u1');
    assert.deepEqual(here1[0], [{ id: 'u1', name: 'Ann' }]);
    assert.equal(e1.connector.pusher.channel('presence-room').subscribed, true, 'Echo prefixes presence-');

    // Three more members, almost surely spread over both shards.
    const others = [];
    for (const [id, name] of [['u2', 'Bo'], ['u3', 'Cy'], ['u4', 'Di']]) {
      const e = await connected(makeEcho({ id, name }));
      const here = [];
      const selfJoin = [];
      e.join('room').here((m) => here.push(m)).joining((m) => selfJoin.push(m));
      await h.until(() => here.length === 1, 5000, `here() for ${id}`);
      assert.ok(here[0].some((m) => m.id === id && m.name === name), JSON.stringify(here[0]));
      others.push({ e, here, selfJoin, id });
    }
    assert.deepEqual(others[2].here[0].map((m) => m.id).sort(), ['u1', 'u2', 'u3', 'u4']);
    await h.until(() => joining.length === 3, 5000, 'joining x3');
    assert.deepEqual(joining, [{ id: 'u2', name: 'Bo' }, { id: 'u3', name: 'Cy' }, { id: 'u4', name: 'Di' }]);
    await h.sleep(200);
    for (const o of others) assert.ok(!o.selfJoin.some((m) => m.id === o.id), `${o.id} told about its own join`);

    others[0].e.leave('room');
    others[1].e.disconnect();
    await h.until(() => leaving.length === 2, 5000, 'leaving x2');
    assert.deepEqual(leaving.map((m) => m.id).sort(), ['u2', 'u3']);
    assert.deepEqual(leaving.find((m) => m.id === 'u2'), { id: 'u2', name: 'Bo' });
  });

  test('echo.private(...).listen(".order.shipped") receives an SDK trigger on private-orders', T, async () => {
    const e = await connected(makeEcho({ id: 'u9' }));
    const got = [];
    const ch = e.private('orders').listen('.order.shipped', (d) => got.push(d));
    const subscribed = new Promise((resolve) => ch.subscribed(resolve));
    await Promise.race([subscribed, h.sleep(5000).then(() => { throw new Error('not subscribed'); })]);
    assert.equal(e.connector.pusher.channel('private-orders').subscribed, true, 'Echo prefixes private-');
    const res = await api.trigger('private-orders', 'order.shipped', { order: 17 });
    assert.equal(res.status, 200);
    await h.until(() => got.length === 1, 5000, 'order.shipped');
    assert.deepEqual(got, [{ order: 17 }]);
  });

  test('whisper (client event) on a private channel reaches the other Echo client only', T, async () => {
    const a = await connected(makeEcho({ id: 'wa' }));
    const b = await connected(makeEcho({ id: 'wb' }));
    const gotA = [];
    const gotB = [];
    const chA = a.private('chat').listenForWhisper('typing', (d) => gotA.push(d));
    const chB = b.private('chat').listenForWhisper('typing', (d) => gotB.push(d));
    await Promise.all([chA, chB].map((ch) => new Promise((resolve) => ch.subscribed(resolve))));
    chA.whisper('typing', { who: 'wa' });
    await h.until(() => gotB.length === 1, 5000, 'whisper at b');
    assert.deepEqual(gotB, [{ who: 'wa' }]);
    await h.sleep(300);
    assert.deepEqual(gotA, []);
  });
});
