'use strict';
// Tag filtering end to end (DELTA-TAGS.md §6): every comparator and and/or/not give exactly the matching
// events, untagged events reach only unfiltered sockets, invalid filters are refused with pusher:error 4000,
// enable_tags=false strips tags after routing. SHARDS=2, filtered subscribers on both shards.

const { describe, test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const h = require('./helpers');
const raw = require('./raw');

const T = { timeout: 60000 };
const APPS = [{
  ...h.DEFAULT_APPS[0],
  // One subscriber per filter on each shard, plus the connections perShard holds while the kernel spreads
  // connects over the shards: more than the default app's 50 when the spread is uneven.
  max_connections: 500,
  max_backend_events_per_second: 100000,
  channel_delta_compression: { 'notags-*': { enable_tags: false } },
}];

// Events: [name, tags or null].
const EVENTS = [
  ['e0', { type: 'goal', team: 'Real Madrid', xG: '0.87' }],
  ['e1', { type: 'shot', team: 'Barcelona', xG: '0.12' }],
  ['e2', { type: 'shot', team: 'Real Betis', xG: '0.91' }],
  ['e3', { type: 'card', team: 'Real Madrid' }],
  ['e4', {}],
  ['e5', null],
  ['e6', { type: 'goal', team: 'Atletico', xG: 'n/a' }],
];

const FILTERS = {
  eq: [{ key: 'type', cmp: 'eq', val: 'goal' }, ['e0', 'e6']],
  neq: [{ key: 'type', cmp: 'neq', val: 'shot' }, ['e0', 'e3', 'e4', 'e6']],
  in: [{ key: 'type', cmp: 'in', vals: ['card', 'goal'] }, ['e0', 'e3', 'e6']],
  nin: [{ key: 'type', cmp: 'nin', vals: ['goal'] }, ['e1', 'e2', 'e3', 'e4']],
  ex: [{ key: 'xG', cmp: 'ex' }, ['e0', 'e1', 'e2', 'e6']],
  nex: [{ key: 'xG', cmp: 'nex' }, ['e3', 'e4']],
  sw: [{ key: 'team', cmp: 'sw', val: 'Real' }, ['e0', 'e2', 'e3']],
  ew: [{ key: 'team', cmp: 'ew', val: 'Madrid' }, ['e0', 'e3']],
  ct: [{ key: 'team', cmp: 'ct', val: 'et' }, ['e2', 'e6']],
  gt: [{ key: 'xG', cmp: 'gt', val: 0.5 }, ['e0', 'e2']],
  gte: [{ key: 'xG', cmp: 'gte', val: '0.87' }, ['e0', 'e2']],
  lt: [{ key: 'xG', cmp: 'lt', val: '0.5' }, ['e1']],
  lte: [{ key: 'xG', cmp: 'lte', val: '0.87' }, ['e0', 'e1']],
  and: [{ op: 'and', nodes: [{ key: 'type', cmp: 'eq', val: 'shot' }, { key: 'xG', cmp: 'gte', val: '0.8' }] }, ['e2']],
  or: [{ op: 'or', nodes: [{ key: 'type', cmp: 'eq', val: 'card' }, { key: 'team', cmp: 'eq', val: 'Barcelona' }] }, ['e1', 'e3']],
  not: [{ op: 'not', nodes: [{ key: 'team', cmp: 'sw', val: 'Real' }] }, ['e1', 'e4', 'e6']],
};

async function publish(port, channel, events) {
  for (const [name, tags] of events) {
    const body = { name, channel, data: JSON.stringify({ name }) };
    if (tags) body.tags = tags;
    const res = await h.signedPost(port, h.APP, `/apps/${h.APP.id}/events`, body);
    assert.equal(res.status, 200, res.body);
  }
}

describe('tag filtering (SHARDS=2, tag_filtering.enabled)', () => {
  let server;
  const conns = [];
  before(async () => {
    server = await h.startServer({ shards: 2, apps: APPS, env: { TAG_FILTERING_ENABLED: 'true' } });
  });
  after(async () => {
    for (const c of conns) c.ws.close();
    const res = await server.stop();
    assert.equal(res.code, 0);
  });

  test('every comparator and and/or/not deliver exactly the matching events, on both shards', T, async () => {
    const byShard = await raw.perShard(server.port, Object.keys(FILTERS).length + 1);
    const subs = [];
    for (const [shard, list] of byShard) {
      conns.push(...list);
      const [unfiltered, ...rest] = list;
      await raw.rawSubscribe(unfiltered, 'match');
      subs.push([`unfiltered@${shard}`, unfiltered, EVENTS.map((e) => e[0])]);
      const names = Object.keys(FILTERS);
      for (let i = 0; i < names.length; i++) {
        const [filter, want] = FILTERS[names[i]];
        // sockudo-js sends tags_filter; the `filter` spelling is accepted too.
        const field = i % 2 ? 'filter' : 'tags_filter';
        await raw.rawSubscribe(rest[i], 'match', { [field]: filter });
        subs.push([`${names[i]}@${shard}`, rest[i], want]);
      }
    }
    await publish(server.port, 'match', EVENTS);
    const events = (c) => c.messages.filter((m) => m.channel === 'match' && !m.event.startsWith('pusher')).map((m) => m.event);
    await h.until(() => subs.every(([, c, want]) => events(c).length >= want.length), 10000, 'every subscriber\'s events');
    await h.sleep(200); // anything a filter should have dropped would have arrived by now
    for (const [what, c, want] of subs) {
      assert.deepEqual(events(c), want, what);
    }
    // Tags are kept in delivered envelopes by default.
    const [, first] = subs[0];
    const e0 = first.messages.find((m) => m.event === 'e0');
    assert.deepEqual(e0.tags, { team: 'Real Madrid', type: 'goal', xG: '0.87' });
  });

  test('invalid filters are refused with pusher:error 4000 and no subscription', T, async () => {
    const c = await raw.rawConn(server.port);
    conns.push(c);
    for (const bad of [
      { op: 'and', nodes: [] },
      { key: '', cmp: 'eq', val: 'x' },
      { key: 'a', cmp: 'in', vals: [] },
      { key: 'a', cmp: 'like', val: 'x' },
      { op: 'not', nodes: [{ key: 'a', cmp: 'ex' }, { key: 'b', cmp: 'ex' }] },
      { key: 'a', cmp: 'eq', val: 'x'.repeat(2000) },
    ]) {
      const reply = await raw.rawSubscribe(c, 'refused', { tags_filter: bad }, { expectOk: false });
      assert.equal(reply.event, 'pusher:error');
      assert.equal(reply.data.code, 4000);
      assert.match(reply.data.message, /^Invalid message format: Invalid tags filter: /);
      assert.equal(reply.channel, undefined);
    }
    // Subscribing again to a joined channel replaces its filter (no second subscription_succeeded).
    const r = await raw.rawConn(server.port);
    conns.push(r);
    await raw.rawSubscribe(r, 'resub', { tags_filter: { key: 'type', cmp: 'eq', val: 'goal' } });
    r.send({ event: 'pusher:subscribe', data: { channel: 'resub', tags_filter: { key: 'type', cmp: 'eq', val: 'shot' } } });
    // The re-subscribe has no reply: a ping behind it on the same socket is answered once it was applied.
    r.send({ event: 'pusher:ping', data: {} });
    await r.next((m) => m.event === 'pusher:pong');
    await publish(server.port, 'resub', [['g', { type: 'goal' }], ['s', { type: 'shot' }]]);
    await h.until(() => r.messages.some((m) => m.event === 's'), 5000);
    await h.sleep(100);
    assert.deepEqual(r.messages.filter((m) => m.channel === 'resub' && !m.event.startsWith('pusher')).map((m) => m.event), ['s']);
    assert.equal(r.messages.filter((m) => m.event === 'pusher_internal:subscription_succeeded').length, 1);
    await publish(server.port, 'refused', [['x', { a: 'b' }]]);
    await h.sleep(200);
    assert.equal(c.messages.filter((m) => m.channel === 'refused' && m.event === 'x').length, 0);
  });

  test('batch_events carry tags per item; client events (untagged) reach only unfiltered members', T, async () => {
    const api = h.sdk(server.port);
    const byShard = await raw.perShard(server.port, 2);
    const [f0, u0] = byShard.get('0');
    const [f1, u1] = byShard.get('1');
    conns.push(f0, u0, f1, u1);
    const goals = { tags_filter: { key: 'type', cmp: 'eq', val: 'goal' } };
    // Filtered members (both shards) and unfiltered ones.
    for (const c of [f0, f1]) await raw.rawSubscribe(c, 'private-live', { ...api.authorizeChannel(c.socketId, 'private-live'), ...goals });
    for (const c of [u0, u1]) await raw.rawPrivate(api, c, 'private-live');
    const batch = [
      { name: 'b-goal', channel: 'private-live', data: '{}', tags: { type: 'goal' } },
      { name: 'b-shot', channel: 'private-live', data: '{}', tags: { type: 'shot' } },
      { name: 'b-none', channel: 'private-live', data: '{}' },
      { name: 'b-goal2', channel: 'private-live', data: '{}', tags: { type: 'goal', min: '90' } },
    ];
    const res = await h.signedPost(server.port, h.APP, `/apps/${h.APP.id}/batch_events`, { batch });
    assert.equal(res.status, 200, res.body);
    // A client event from an unfiltered member: no tags, so filtered members never get it.
    u0.send({ event: 'client-typing', channel: 'private-live', data: { who: 'u0' } });
    const events = (c) => c.messages.filter((m) => m.channel === 'private-live' && !m.event.startsWith('pusher')).map((m) => m.event);
    await h.until(() => events(u1).length === 5, 5000, 'unfiltered member on the other shard');
    await h.until(() => [f0, f1].every((c) => events(c).length >= 2), 5000, 'filtered members');
    await h.sleep(200);
    assert.deepEqual(events(u1), ['b-goal', 'b-shot', 'b-none', 'b-goal2', 'client-typing']);
    assert.deepEqual(events(u0), ['b-goal', 'b-shot', 'b-none', 'b-goal2'], 'the sender does not get its own client event');
    for (const c of [f0, f1]) assert.deepEqual(events(c), ['b-goal', 'b-goal2']);
    const goal2 = f1.messages.find((m) => m.event === 'b-goal2');
    assert.deepEqual(goal2.tags, { min: '90', type: 'goal' });
    const bad = await h.signedPost(server.port, h.APP, `/apps/${h.APP.id}/batch_events`, {
      batch: [{ name: 'ok', channel: 'private-live', data: '{}' }, { name: 'x', channel: 'private-live', data: '{}', tags: { n: 5 } }],
    });
    assert.equal(bad.status, 400, 'a bad tag in any item refuses the batch');
  });

  test('enable_tags=false strips tags after routing; bad publish tags are a 400', T, async () => {
    const [f, plain] = [await raw.rawConn(server.port), await raw.rawConn(server.port)];
    conns.push(f, plain);
    await raw.rawSubscribe(f, 'notags-a', { tags_filter: { key: 'type', cmp: 'eq', val: 'goal' } });
    await raw.rawSubscribe(plain, 'notags-a');
    await publish(server.port, 'notags-a', [['g', { type: 'goal' }], ['s', { type: 'shot' }]]);
    await h.until(() => plain.messages.filter((m) => m.channel === 'notags-a' && !m.event.startsWith('pusher')).length === 2, 5000);
    await h.until(() => f.messages.some((m) => m.event === 'g'), 5000, 'the filtered subscriber\'s event');
    await h.sleep(100);
    const got = f.messages.filter((m) => m.channel === 'notags-a' && !m.event.startsWith('pusher'));
    assert.deepEqual(got.map((m) => m.event), ['g']);
    assert.equal(got[0].tags, undefined);
    const res = await h.signedPost(server.port, h.APP, `/apps/${h.APP.id}/events`, { name: 'x', channel: 'a', data: '{}', tags: { n: 5 } });
    assert.equal(res.status, 400);
  });
});

describe('tag filtering switched off (default)', () => {
  let server;
  before(async () => {
    server = await h.startServer({ shards: 1, apps: APPS });
  });
  after(async () => {
    const res = await server.stop();
    assert.equal(res.code, 0);
  });

  test('filters are validated but ignored: a filtered subscriber gets every event, tagged or not', T, async () => {
    const c = await raw.rawConn(server.port);
    const bad = await raw.rawSubscribe(c, 'off', { tags_filter: { op: 'or', nodes: [] } }, { expectOk: false });
    assert.equal(bad.data.code, 4000);
    await raw.rawSubscribe(c, 'off', { tags_filter: { key: 'type', cmp: 'eq', val: 'goal' } });
    await publish(server.port, 'off', EVENTS);
    await h.until(() => c.messages.filter((m) => m.channel === 'off' && !m.event.startsWith('pusher')).length === EVENTS.length, 3000);
    c.ws.close();
  });
});
