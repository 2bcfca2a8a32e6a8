'use strict';
// pusher-js over wss:// and the pusher server SDK over https against sockudo with TLS on the main port, trusting
// a test CA (NODE_EXTRA_CA_CERTS), as an application with a private CA would. Certificates are made with the
// openssl command line.

const { describe, test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const h = require('./helpers');

const T = { timeout: 30000 };

/** A test CA and a server certificate for localhost/127.0.0.1 in `dir`; throws when openssl is missing. */
function makeCertificates(dir) {
  const run = (...args) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
  run('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '1', '-subj', '/CN=sockudo js test CA');
  run('req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-keyout', 'key.pem', '-out', 'server.csr', '-subj', '/CN=localhost');
  fs.writeFileSync(path.join(dir, 'ext.cnf'), 'subjectAltName=DNS:localhost,IP:127.0.0.1\n');
  run('x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial',
    '-out', 'cert.pem', '-days', '1', '-extfile', 'ext.cnf');
}

describe('pusher-js over wss://', () => {
  let server;
  let dir;

  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sockudo-js-tls-'));
    makeCertificates(dir);
    server = await h.startServer({
      env: {
        SSL_ENABLED: 'true',
        SSL_CERT_PATH: path.join(dir, 'cert.pem'),
        SSL_KEY_PATH: path.join(dir, 'key.pem'),
      },
      ca: fs.readFileSync(path.join(dir, 'ca.pem')),
    });
  });
  after(async () => {
    const res = await server.stop();
    fs.rmSync(dir, { recursive: true, force: true });
    assert.equal(res.code, 0, `server exit ${JSON.stringify(res)}\n${server.logs()}`);
  });

  test('connects with forceTLS, subscribes and receives events triggered over https', T, () => {
    const out = execFileSync(
      process.execPath,
      [path.join(__dirname, 'tls-client.js'), String(server.port), h.APP.key, h.APP.id, h.APP.secret],
      { env: { ...process.env, NODE_EXTRA_CA_CERTS: path.join(dir, 'ca.pem') }, cwd: path.join(__dirname, '..') },
    );
    const result = JSON.parse(out.toString().trim().split('\n').pop());
    assert.equal(result.error, undefined, `client error: ${result.error}\n${server.logs()}`);
    assert.equal(result.states[0], 'connected');
    assert.match(result.socketId, /^\d+\.\d+$/);
    assert.deepEqual(result.events, [{ n: 0 }, { n: 1 }, { n: 2 }]);
  });

  test('a client that does not trust the CA is refused by the handshake', T, async () => {
    await assert.rejects(h.httpGet(server.port, '/up', Buffer.from('')), /certificate|self.signed|issuer/i);
  });
});
