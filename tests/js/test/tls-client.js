'use strict';
// Run by tls.test.js in a child process started with NODE_EXTRA_CA_CERTS=<test CA>, the way an application
// trusts a private CA: pusher-js connects over wss:// (forceTLS), subscribes, and the `pusher` server SDK
// triggers over https (useTLS). Prints one JSON line with what the client saw.

const PusherJS = require('pusher-js');
const PusherServer = require('pusher');

const [port, key, appId, secret] = process.argv.slice(2);
const result = { states: [], events: [] };
const done = (extra) => {
  process.stdout.write(JSON.stringify({ ...result, ...extra, state: client.connection.state }) + "\n");
  process.exit(0);
};
setTimeout(() => done({ error: 'timed out' }), 10000);

const client = new PusherJS(key, {
  wsHost: 'localhost',
  wssPort: Number(port),
  forceTLS: true,
  enabledTransports: ['ws'],
  cluster: 'x',
  enableStats: false,
});
client.connection.bind('state_change', ({ current }) => result.states.push(current));
client.connection.bind('error', (e) => done({ error: JSON.stringify(e) }));
const channel = client.subscribe('tls-news');
channel.bind('pusher:subscription_succeeded', async () => {
  result.socketId = client.connection.socket_id;
  const api = new PusherServer({ appId, key, secret, host: 'localhost', port, useTLS: true, timeout: 5000 });
  try {
    for (let i = 0; i < 3; i++) await api.trigger('tls-news', 'headline', { n: i });
  } catch (e) {
    done({ error: `trigger: ${e.message}` });
  }
});
channel.bind('headline', (data) => {
  result.events.push(data);
  if (result.events.length === 3) {
    client.disconnect();
    done({});
  }
});
