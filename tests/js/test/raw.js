'use strict';
// Raw-ws helpers shared by the presence / client-event / user / REST-read tests:
// connections pinned to a shard (X-Sockudo-Shard upgrade header), hand-built
// subscribe frames with auth from the official `pusher` SDK.

const assert = require('node:assert/strict');
const h = require('./helpers');

/** A raw ws connection that has received pusher:connection_established; adds socketId. */
async function rawConn(port, key = h.APP.key) {
  const c = await h.rawWs(port, key);
  const est = await c.next((m) => m.event === 'pusher:connection_established');
  c.socketId = est.parsedData.socket_id;
  c.send = (obj) => c.ws.send(JSON.stringify(obj));
  return c;
}

/**
 * Open raw connections until `count` connections are on each shard of `shards`.
 * Returns Map shard -> [conn, ...]; spares are closed.
 */
async function perShard(port, count = 1, shards = ['0', '1'], key = h.APP.key) {
  const byShard = new Map(shards.map((s) => [s, []]));
  const spare = [];
  const full = () => [...byShard.values()].every((l) => l.length >= count);
  for (let i = 0; i < 128 && !full(); i++) {
    const c = await rawConn(port, key);
    const l = byShard.get(c.shard);
    if (l && l.length < count) l.push(c);
    else spare.push(c);
  }
  for (const c of spare) c.ws.close();
  assert.ok(full(), `could not get ${count} connection(s) on each of shards ${shards}`);
  return byShard;
}

/** Resolve with the first subscription_succeeded / pusher:error for `channel` after sending subscribe. */
async function rawSubscribe(c, channel, extra = {}, { expectOk = true } = {}) {
  const from = c.messages.length;
  c.send({ event: 'pusher:subscribe', data: { channel, ...extra } });
  const reply = await c.next(
    (m) => c.messages.indexOf(m) >= from &&
      ((m.event === 'pusher_internal:subscription_succeeded' && m.channel === channel) || m.event === 'pusher:error'),
  );
  if (expectOk) assert.equal(reply.event, 'pusher_internal:subscription_succeeded', JSON.stringify(reply));
  return reply;
}

/** Subscribe a raw connection to a presence channel as user `userId` (auth from the Node SDK). */
function rawPresence(api, c, channel, userId, userInfo, opts) {
  const auth = api.authorizeChannel(c.socketId, channel, { user_id: userId, user_info: userInfo });
  return rawSubscribe(c, channel, auth, opts);
}

/** Subscribe a raw connection to a private channel (auth from the Node SDK). */
function rawPrivate(api, c, channel, opts) {
  return rawSubscribe(c, channel, api.authorizeChannel(c.socketId, channel), opts);
}

const eventsOf = (c, channel, name) =>
  c.messages.filter((m) => m.channel === channel && m.event === name).map((m) => m.parsedData ?? m.data);

/** pusher-js channelAuthorization that signs presence auth for a user with the Node SDK. */
function presenceAuthorizer(api, userId, userInfo) {
  return {
    customHandler: ({ socketId, channelName }, cb) =>
      cb(null, api.authorizeChannel(socketId, channelName, { user_id: userId, user_info: userInfo })),
  };
}

/** pusher-js channelAuthorization for private channels. */
function privateAuthorizer(api) {
  return { customHandler: ({ socketId, channelName }, cb) => cb(null, api.authorizeChannel(socketId, channelName)) };
}

module.exports = { rawConn, perShard, rawSubscribe, rawPresence, rawPrivate, eventsOf, presenceAuthorizer, privateAuthorizer };
