'use strict';
// The durable webhook queue (QUEUE_DRIVER=redis), checked with the official `pusher` Node SDK: webhooks
// stored while the receiver refuses them survive a SIGKILL of the server and are delivered by the next
// process, each valid (webhook.isValid()) and carrying the same X-Sockudo-Webhook-Id on every attempt.
// Needs SOCKUDO_TEST_REDIS_URL (scripts/services/redis.sh); fails without it. Runs against one node: the
// cluster runs of the suite (SOCKUDO_TEST_CLUSTER) skip it, tests/webhook_queue.rs covers the rest.

const { describe, test } = require('node:test');
const assert = require('node:assert/strict');
const h = require('./helpers');
const { startReceiver } = require('./webhook-receiver');

const APP = h.APP;
const CHANNELS = ['queued-a', 'queued-b', 'queued-c', 'queued-d', 'queued-e'];

describe('durable webhook queue (redis)', { skip: !!process.env.SOCKUDO_TEST_CLUSTER }, () => {
  test('webhooks queued before a SIGKILL are delivered after the restart, valid and with a stable id',
    { timeout: 60000 }, async (t) => {
      const redisUrl = process.env.SOCKUDO_TEST_REDIS_URL;
      assert.ok(redisUrl, 'SOCKUDO_TEST_REDIS_URL is not set: start Redis with scripts/services/redis.sh');
      let refusing = true;
      const rx = await startReceiver({ app: APP, respond: () => (refusing ? 503 : 200) });
      const servers = [];
      const clients = [];
      t.after(async () => {
        for (const c of clients) c.disconnect();
        for (const s of servers) await s.stop();
        await rx.close();
      });
      const prefix = `js${process.pid}-${rx.port}:`;
      const start = () => h.startServer({
        apps: [{
          id: APP.id,
          key: APP.key,
          secret: APP.secret,
          enabled: true,
          webhooks: [{
            url: rx.url('/queued'),
            event_types: ['channel_occupied'],
            retry: { initial_backoff_ms: 200, max_backoff_ms: 500 },
          }],
        }],
        config: { queue: { driver: 'redis', redis: { prefix }, reliability: { lease_duration_ms: 2000 } } },
        env: { REDIS_URL: redisUrl },
      });

      const first = await start();
      servers.push(first);
      const client = await h.connectedClient(first.port);
      clients.push(client);
      for (const name of CHANNELS) await h.subscribe(client, name);
      // Every webhook reached the receiver at least once (refused): it is stored and held in retries.
      await rx.waitFor(() => CHANNELS.every((c) => rx.eventsOf('/queued', 'channel_occupied', c).length > 0),
        15000, 'a refused attempt of every webhook');
      client.disconnect();
      first.proc.kill('SIGKILL');
      await first.stop();

      refusing = false;
      const second = await start();
      servers.push(second);
      const delivered = await rx.waitFor(() => {
        const ok = rx.events('/queued', { accepted: true });
        return CHANNELS.every((c) => ok.some((e) => e.channel === c)) ? ok : null;
      }, 30000, 'every webhook accepted after the restart');

      for (const name of CHANNELS) {
        const attempts = rx.eventsOf('/queued', 'channel_occupied', name);
        const ids = new Set(attempts.map((e) => e._req.headers['x-sockudo-webhook-id']));
        assert.equal(ids.size, 1, `${name}: every attempt carries one id, got ${[...ids]}`);
        assert.match([...ids][0], /^[0-9a-f]{32}$/);
        // A repeat is byte-for-byte the same request.
        const bodies = new Set(attempts.map((e) => e._req.rawBody));
        assert.equal(bodies.size, 1, `${name}: attempts differ`);
      }
      assert.ok(delivered.every((e) => e._req.valid));
      rx.assertAllValid();
    });
});
