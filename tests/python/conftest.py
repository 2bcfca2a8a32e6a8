"""Fixtures for the Python SDK conformance tests: a real sockudo server (SHARDS=2) on a free port."""
import contextlib
import json
import os
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOCKUDO_BIN = os.environ.get("SOCKUDO_BIN", str(ROOT / "target" / "debug" / "sockudo"))

APP = {"id": "123", "key": "py-key", "secret": "py-secret"}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, port, proc, log_path, tmpdir):
        self.port = port
        self.proc = proc
        self.log_path = log_path
        self.tmpdir = tmpdir

    def logs(self):
        return Path(self.log_path).read_text(errors="replace")


DEFAULT_APPS = [{
    "id": APP["id"], "key": APP["key"], "secret": APP["secret"],
    "enabled": True, "enable_client_messages": True, "max_connections": 50,
}]


@contextlib.contextmanager
def run_server(apps=None, extra_env=None, config=None):
    """Start sockudo (SHARDS=2) with `apps` (default: APP) and extra top-level `config` sections / env
    variables; yields a Server once GET /up answers, stops it with SIGTERM and asserts exit code 0."""
    assert Path(SOCKUDO_BIN).exists(), f"sockudo binary not found at {SOCKUDO_BIN} (set SOCKUDO_BIN)"
    tmp = tempfile.TemporaryDirectory(prefix="sockudo-py-")
    cfg = Path(tmp.name) / "config.json"
    cfg.write_text(json.dumps({**(config or {}), "app_manager": {"array": {"apps": apps or DEFAULT_APPS}}}))
    port = free_port()
    log_path = Path(tmp.name) / "server.log"
    log = open(log_path, "wb")
    env = {**os.environ, "PORT": str(port), "HOST": "127.0.0.1", "SHARDS": "2",
           "METRICS_ENABLED": "false", "RUST_LOG": "warn",
           # No drain period: SIGTERM closes with 4200 at once (draining is tested in Rust, tests/drain.rs).
           "SHUTDOWN_GRACE_PERIOD": "0", **(extra_env or {})}
    proc = subprocess.Popen([SOCKUDO_BIN, "--config", str(cfg)], env=env, stdout=log, stderr=subprocess.STDOUT)
    srv = Server(port, proc, log_path, tmp)
    try:
        deadline = time.time() + 15
        while True:
            assert proc.poll() is None, f"sockudo exited during startup:\n{srv.logs()}"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/up", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert time.time() < deadline, f"sockudo did not come up:\n{srv.logs()}"
            time.sleep(0.05)
        yield srv
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = proc.wait()
        log.close()
        logs = srv.logs()
        tmp.cleanup()
    assert code == 0, f"server exit code {code}\n{logs}"


@pytest.fixture
def server():
    with run_server() as srv:
        yield srv


def ws_subscribe(port, channel, key=None, timeout=5.0):
    """A raw websocket-client connection subscribed to public `channel`; fails on pusher:error or timeout."""
    import websocket  # websocket-client

    ws = websocket.create_connection(
        f"ws://127.0.0.1:{port}/app/{key or APP['key']}?protocol=7&client=py&version=1.0", timeout=timeout)
    est = json.loads(ws.recv())
    assert est["event"] == "pusher:connection_established", est
    ws.send(json.dumps({"event": "pusher:subscribe", "data": {"channel": channel}}))
    deadline = time.time() + timeout
    while True:
        assert time.time() < deadline, f"no subscription_succeeded for {channel}"
        msg = json.loads(ws.recv())
        assert msg["event"] != "pusher:error", msg
        if msg["event"] == "pusher_internal:subscription_succeeded" and msg.get("channel") == channel:
            return ws
