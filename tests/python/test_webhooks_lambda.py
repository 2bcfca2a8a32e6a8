"""Lambda webhooks against moto (PyPI `moto[server]`): sockudo built with `--features lambda` must invoke the
configured function asynchronously (`X-Amz-Invocation-Type: Event`) with the Pusher webhook body
`{"time_ms", "events"}` as its payload.

moto runs as a real server on a loopback port, with Lambda in no-Docker mode (`POST /moto-api/config
{"lambda": {"use_docker": false}}`). That mode keeps no record of invocations, so the payload is observed with
moto's request recorder: `/moto-api/recorder/start-recording` after the set-up, then
`/moto-api/recorder/download-recording` returns every request moto got since (headers and body), one JSON object
a line. moto's own request log (status 202 for an async invoke) is checked as well.

moto missing is an error, not a skip: the imports below fail the collection, and the fixture asserts
moto_server is installed next to this Python (scripts/test.sh installs it into target/pyvenv)."""
import base64
import io
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
import zipfile
from pathlib import Path

import boto3  # noqa: F401  (moto[server] brings it; imported here so a missing install fails loudly)
import moto  # noqa: F401
import pytest

from conftest import APP, free_port, run_server, ws_subscribe

REGION = "us-east-1"
INVOKE_WAIT = 10.0
ANSI = re.compile(r"\x1b\[[0-9;]*m")  # moto_server colours its request log


def _moto_server_bin():
    beside = Path(sys.executable).parent / "moto_server"
    if beside.exists():
        return str(beside)
    found = shutil.which("moto_server")
    assert found, (f"moto_server not found (looked beside {sys.executable} and on PATH): "
                   "install moto[server] from tests/python/requirements.txt")
    return found


def _http(method, url, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=5) as r:
        return r.status, r.read().decode()


class Moto:
    def __init__(self, url, proc, log_path):
        self.url = url
        self.proc = proc
        self.log_path = log_path
        self._role = None

    def log(self):
        """moto_server's output without its colour codes and without the recorder polls of this test."""
        text = ANSI.sub("", Path(self.log_path).read_text(errors="replace"))
        return "\n".join(line for line in text.splitlines() if "/moto-api/recorder/" not in line)

    def client(self, service):
        return boto3.client(service, endpoint_url=self.url, region_name=REGION,
                            aws_access_key_id="test", aws_secret_access_key="test")

    def create_function(self, name):
        """A Lambda function with a trivial Python handler (moto's no-Docker mode does not run it)."""
        if self._role is None:
            self._role = self.client("iam").create_role(
                RoleName="sockudo-webhook-role",
                AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [{
                    "Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"},
                    "Action": "sts:AssumeRole"}]}),
            )["Role"]["Arn"]
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as z:
            z.writestr("index.py", "def handler(event, context):\n    return event\n")
        fn = self.client("lambda").create_function(
            FunctionName=name, Runtime="python3.12", Role=self._role, Handler="index.handler",
            Code={"ZipFile": buf.getvalue()})
        assert fn["FunctionName"] == name
        return fn["FunctionArn"]

    def start_recording(self):
        _http("POST", f"{self.url}/moto-api/recorder/reset-recording")
        _http("POST", f"{self.url}/moto-api/recorder/start-recording")

    def recorded(self):
        _, text = _http("GET", f"{self.url}/moto-api/recorder/download-recording")
        out = []
        for line in text.splitlines():
            if not line.strip():
                continue
            e = json.loads(line)
            body = e.get("body") or ""
            if e.get("body_encoded"):
                body = base64.b64decode(body).decode("utf-8", errors="replace")
            out.append({"method": e["method"], "url": e["url"],
                        "headers": {k.lower(): v for k, v in (e.get("headers") or {}).items()}, "body": body})
        return out

    def invocations(self, function_name):
        path = f"/2015-03-31/functions/{function_name}/invocations"
        return [r for r in self.recorded() if r["method"] == "POST" and r["url"].split("?")[0].endswith(path)]


@pytest.fixture
def moto_server(tmp_path):
    port = free_port()
    log_path = tmp_path / "moto.log"
    log = open(log_path, "wb")
    env = {**os.environ, "MOTO_RECORDER_FILEPATH": str(tmp_path / "moto_recording.jsonl")}
    env.pop("MOTO_ENABLE_RECORDING", None)
    proc = subprocess.Popen([_moto_server_bin(), "-H", "127.0.0.1", "-p", str(port)], env=env,
                            stdout=log, stderr=subprocess.STDOUT)
    m = Moto(f"http://127.0.0.1:{port}", proc, log_path)
    try:
        deadline = time.time() + 30
        while True:
            assert proc.poll() is None, f"moto_server exited:\n{m.log()}"
            try:
                _http("GET", f"{m.url}/moto-api/config")
                break
            except OSError:
                assert time.time() < deadline, f"moto_server did not come up:\n{m.log()}"
                time.sleep(0.1)
        status, cfg = _http("POST", f"{m.url}/moto-api/config", {"lambda": {"use_docker": False}})
        assert json.loads(cfg)["lambda"]["use_docker"] is False, cfg
        yield m
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def aws_env(m):
    return {
        "AWS_ENDPOINT_URL": m.url,
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_EC2_METADATA_DISABLED": "true",
    }


def assert_one_async_invocation(m, fn, calls, events):
    """`calls` is exactly one asynchronous invocation of `fn` whose payload is a Pusher webhook body with `events`."""
    assert len(calls) == 1, f"exactly one invocation of {fn}: {calls}"
    call = calls[0]
    assert call["headers"].get("x-amz-invocation-type") == "Event", f"not an async invocation: {call['headers']}"
    assert call["body"], f"empty invocation payload: {call}"
    payload = json.loads(call["body"])
    assert sorted(payload) == ["events", "time_ms"], payload
    assert payload["events"] == events, payload
    assert isinstance(payload["time_ms"], int) and abs(payload["time_ms"] - time.time() * 1000) < 300_000, payload
    # moto answered 202: an asynchronous invocation of a function that exists.
    log = m.log()
    assert re.search(rf'"POST /2015-03-31/functions/{re.escape(fn)}/invocations HTTP/1\.1" 202', log), log


def test_moto_records_async_invocations_self_check(moto_server):
    """The observation path itself, with boto3 as the invoker (needs no sockudo)."""
    fn = "self-check"
    moto_server.create_function(fn)
    moto_server.start_recording()
    events = [{"name": "channel_occupied", "channel": "c"}]
    body = json.dumps({"time_ms": int(time.time() * 1000), "events": events})
    res = moto_server.client("lambda").invoke(FunctionName=fn, InvocationType="Event", Payload=body.encode())
    assert res["StatusCode"] == 202
    assert moto_server.invocations("other") == []
    assert_one_async_invocation(moto_server, fn, moto_server.invocations(fn), events)


@pytest.mark.parametrize("shape", ["lambda_function", "lambda_object"])
def test_lambda_webhook_invoked_async_with_pusher_payload(moto_server, shape):
    fn = f"sockudo-hook-{shape.replace('_', '-')}"
    moto_server.create_function(fn)
    moto_server.start_recording()
    if shape == "lambda_function":
        hook = {"lambda_function": fn, "event_types": ["channel_occupied"]}
    else:
        hook = {"lambda": {"function_name": fn, "region": REGION}, "event_types": ["channel_occupied"]}
    apps = [{"id": APP["id"], "key": APP["key"], "secret": APP["secret"], "enabled": True, "webhooks": [hook]}]

    with run_server(apps=apps, extra_env=aws_env(moto_server)) as srv:
        ws = ws_subscribe(srv.port, "lambda-chan")
        deadline = time.time() + INVOKE_WAIT
        while not moto_server.invocations(fn):
            assert time.time() < deadline, (
                f"{fn} was not invoked within {INVOKE_WAIT} s (is the server built with --features lambda?)\n"
                f"moto got: {moto_server.recorded()}\nmoto log:\n{moto_server.log()}\nsockudo log:\n{srv.logs()}")
            time.sleep(0.2)
        time.sleep(0.5)  # absence check: one event, one invocation
        calls = moto_server.invocations(fn)
        ws.close()

    assert_one_async_invocation(moto_server, fn, calls, [{"name": "channel_occupied", "channel": "lambda-chan"}])
