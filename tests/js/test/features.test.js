'use strict';
// Optional Pusher features seen through pusher-js: cache channels, subscription counts and watchlist events.

const { describe, test, before, after, afterEach } = require('node:test');
const assert = require('node:assert/strict');
const h = require('./helpers');

const T = { timeout: 20000 };

describe('cache channels, subscription_count, watchlist (pusher-js, SHARDS=2)', () => {
  let server;
  let api;
  const clients = [];
  const connect = async (extra = {}) => {
    const p = await h.connectedClient(server.port, h.APP.key, extra);
    clients.push(p);
    return p;
  };

  before(async () => {
    server = await h.startServer({
      apps: [{
        id: h.APP.id, key: h.APP.key, secret: h.APP.secret, enabled: true,
        enable_client_messages: true, enable_subscription_count: true, enable_watchlist_events: true,
      }],
    });
    api = h.sdk(server.port);
  });
  afterEach(() => {
    while (clients.length) clients.pop().disconnect();
  });
  after(async () => {
    const res = await server.stop();
    assert.equal(res.code, 0, `server exit ${JSON.stringify(res)}\n${server.logs()}`);
  });

  // On a cluster a subscriber on another node may subscribe before that node heard of the publish (cache stores
  // are eventually consistent across nodes, docs/scaling.md): this read-your-write check is for one node.
  test('a cache channel sends pusher:cache_miss, then replays the last event to late subscribers', T, async () => {
    const early = await connect();
    const ch = early.subscribe('cache-scores');
    await h.once(ch, 'pusher:cache_miss');
    const got = h.once(ch, 'score');
    await api.trigger('cache-scores', 'score', { home: 2, away: 1 });
    assert.deepEqual(await got, { home: 2, away: 1 });
    for (let i = 0; i < 4; i++) {
      const late = await connect();
      const replay = h.once(late.subscribe('cache-scores'), 'score');
      assert.deepEqual(await replay, { home: 2, away: 1 });
    }
  });

  test('pusher:subscription_count reports the channel total', T, async () => {
    const a = await connect();
    const ch = a.subscribe('counted');
    const counts = [];
    ch.bind('pusher:subscription_count', (d) => counts.push(d.subscription_count));
    await h.until(() => counts.at(-1) === 1, 5000, 'count 1');
    const others = [];
    for (let i = 0; i < 5; i++) {
      const o = await connect();
      await h.subscribe(o, 'counted');
      others.push(o);
    }
    await h.until(() => counts.at(-1) === 6, 5000, `count 6 (saw ${counts})`);
    assert.ok(counts.length < 7, `announcements are coalesced: ${counts}`);
    others[0].disconnect();
    await h.until(() => counts.at(-1) === 5, 5000, `count 5 (saw ${counts})`);
  });

  test('watchlist online/offline events reach pusher-js user.watchlist', T, async () => {
    const signedIn = async (user) => {
      const p = await connect({
        userAuthentication: { customHandler: ({ socketId }, cb) => cb(null, api.authenticateUser(socketId, user)) },
      });
      p.signin();
      await h.until(() => p.user.user_data, 5000, `signin of ${user.id}`);
      return p;
    };
    const watcher = await signedIn({ id: 'w1', watchlist: ['friend'] });
    const online = h.once(watcher.user.watchlist, 'online');
    const friend = await signedIn({ id: 'friend' });
    const event = await online;
    assert.deepEqual(event.user_ids, ['friend']);
    const offline = h.once(watcher.user.watchlist, 'offline');
    friend.disconnect();
    assert.deepEqual((await offline).user_ids, ['friend']);
  });
});
