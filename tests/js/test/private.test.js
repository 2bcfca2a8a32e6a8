'use strict';
// Private channels with pusher-js, authorized by the official `pusher` SDK's
// authorizeChannel (through pusher-js's channelAuthorization.customHandler).

const { describe, test, before, after, afterEach } = require('node:test');
const assert = require('node:assert/strict');
const h = require('./helpers');

const T = { timeout: 20000 };

/** A customHandler that signs with `signer` (a pusher SDK instance). */
function sdkAuthorizer(signer, calls = []) {
  return {
    customHandler: ({ socketId, channelName }, callback) => {
      calls.push({ socketId, channelName });
      callback(null, signer.authorizeChannel(socketId, channelName));
    },
  };
}

describe('private channels', () => {
  let server;
  let api;
  const clients = [];
  const connect = async (extra) => {
    const p = await h.connectedClient(server.port, h.APP.key, extra);
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

  test('SDK-generated auth: subscription succeeds and events arrive', T, async () => {
    const calls = [];
    const p = await connect({ channelAuthorization: sdkAuthorizer(api, calls) });
    const ch = await h.subscribe(p, 'private-room');
    assert.equal(ch.subscribed, true);
    assert.deepEqual(calls, [{ socketId: p.connection.socket_id, channelName: 'private-room' }]);
    const got = h.once(ch, 'secret');
    await api.trigger('private-room', 'secret', { s: 42 });
    assert.deepEqual(await got, { s: 42 });
  });

  test('wrong signature: pusher:error reported, not subscribed, connection stays connected', T, async () => {
    const wrong = h.sdk(server.port, { ...h.APP, secret: 'wrong-secret' });
    const p = await connect({ channelAuthorization: sdkAuthorizer(wrong) });
    const errors = [];
    p.connection.bind('error', (e) => errors.push(e));
    const states = [];
    p.connection.bind('state_change', ({ current }) => states.push(current));
    const ch = p.subscribe('private-locked');
    const succeeded = [];
    ch.bind('pusher:subscription_succeeded', () => succeeded.push(true));
    const got = h.collect(ch, 'secret');

    await h.until(() => errors.length > 0, 5000, 'pusher-js error event');
    // pusher-js surfaces the server's pusher:error as a connection error event.
    assert.equal(errors[0].type, 'PusherError', JSON.stringify(errors[0]));
    assert.match(String(errors[0].data.message), /signature/i, JSON.stringify(errors[0]));
    assert.equal(ch.subscribed, false);

    // The connection is not dropped: the same socket still works.
    await h.sleep(300);
    assert.equal(p.connection.state, 'connected');
    assert.deepEqual(states, [], `state changed: ${states}`);
    const pub = await h.subscribe(p, 'public-after-error');
    const later = h.once(pub, 'ping');
    await api.trigger('public-after-error', 'ping', 'still here');
    assert.equal(await later, 'still here');

    // Events on the refused channel are not delivered.
    await api.trigger('private-locked', 'secret', 'leak?');
    await h.sleep(300);
    assert.deepEqual(got, []);
    assert.deepEqual(succeeded, []);
  });

  test('auth for another socket is rejected (signature binds socket_id)', T, async () => {
    const other = await connect();
    const stolen = api.authorizeChannel(other.connection.socket_id, 'private-bound');
    const p = await connect({
      channelAuthorization: { customHandler: (_params, cb) => cb(null, stolen) },
    });
    const errors = [];
    p.connection.bind('error', (e) => errors.push(e));
    const ch = p.subscribe('private-bound');
    await h.until(() => errors.length > 0, 5000, 'pusher-js error event');
    assert.equal(errors[0].type, 'PusherError');
    assert.equal(ch.subscribed, false);
    assert.equal(p.connection.state, 'connected');
  });

  test('auth signed for another channel is rejected (signature binds channel)', T, async () => {
    const p = await connect({
      channelAuthorization: {
        customHandler: ({ socketId }, cb) => cb(null, api.authorizeChannel(socketId, 'private-other')),
      },
    });
    const errors = [];
    p.connection.bind('error', (e) => errors.push(e));
    const ch = p.subscribe('private-mine');
    await h.until(() => errors.length > 0, 5000, 'pusher-js error event');
    assert.equal(errors[0].type, 'PusherError');
    assert.equal(ch.subscribed, false);
    assert.equal(p.connection.state, 'connected');
  });

  test('authorizer failure: pusher-js emits pusher:subscription_error and sends nothing', T, async () => {
    const p = await connect({
      // Asynchronous like a real auth endpoint (a synchronous callback would fire
      // the event inside subscribe(), before we could bind to the channel).
      channelAuthorization: {
        customHandler: (_params, cb) => setImmediate(() => cb(new Error('denied by app'), null)),
      },
    });
    const errors = [];
    p.connection.bind('error', (e) => errors.push(e));
    const ch = p.subscribe('private-denied');
    const err = await h.once(ch, 'pusher:subscription_error');
    assert.equal(err.type, 'AuthError');
    assert.match(err.error, /denied by app/);
    await h.sleep(200);
    assert.deepEqual(errors, []);
    assert.equal(p.connection.state, 'connected');
  });
});
