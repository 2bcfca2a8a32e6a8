"""Fixtures for the Python SDK conformance tests: a real sockudo server (SHARDS=2) on a free port."""
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


@pytest.fixture
def server():
    assert Path(SOCKUDO_BIN).exists(), f"sockudo binary not found at {SOCKUDO_BIN} (set SOCKUDO_BIN)"
    tmp = tempfile.TemporaryDirectory(prefix="sockudo-py-")
    cfg = Path(tmp.name) / "config.json"
    cfg.write_text(json.dumps({"app_manager": {"array": {"apps": [{
        "id": APP["id"], "key": APP["key"], "secret": APP["secret"],
        "enabled": True, "enable_client_messages": True, "max_connections": 50,
    }]}}}))
    port = free_port()
    log_path = Path(tmp.name) / "server.log"
    log = open(log_path, "wb")
    env = {**os.environ, "PORT": str(port), "HOST": "127.0.0.1", "SHARDS": "2",
           "METRICS_ENABLED": "false", "RUST_LOG": "warn"}
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
