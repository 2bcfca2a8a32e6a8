"""HTTP webhooks checked with the official Python `pusher` SDK: a small receiver (http.server in a thread)
records every request and each one must pass `Pusher.validate_webhook(key, signature, body)` (HMAC-SHA256 of
the raw body with the app secret, `time_ms` within 300 s)."""
import hashlib
import hmac
import json
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pusher
import pytest

from conftest import APP, run_server, ws_subscribe

VACATED_WAIT = 9.0


class Receiver:
    """Records (method, path, headers, raw body) of every request; answers 200."""

    def __init__(self):
        self.requests = []
        self.cond = threading.Condition()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with outer.cond:
                    outer.requests.append({"method": "POST", "path": self.path,
                                           "headers": dict(self.headers.items()), "body": body})
                    outer.cond.notify_all()
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path="/hook"):
        return f"http://127.0.0.1:{self.port}{path}"

    def wait(self, pred, timeout=5.0, what="condition"):
        deadline = time.time() + timeout
        with self.cond:
            while True:
                got = pred(self.requests)
                if got:
                    return got
                left = deadline - time.time()
                assert left > 0, f"timed out waiting for {what}; received {self.requests}"
                self.cond.wait(left)

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def receiver():
    rx = Receiver()
    yield rx
    rx.close()


def sdk(secret=APP["secret"]):
    return pusher.Pusher(app_id=APP["id"], key=APP["key"], secret=secret)


def validated(req):
    """The webhook body as the Python SDK validates it; asserts it is valid and correctly typed."""
    h = {k.lower(): v for k, v in req["headers"].items()}
    assert req["method"] == "POST"
    assert h.get("content-type") == "application/json", h
    data = sdk().validate_webhook(key=h.get("x-pusher-key"), signature=h.get("x-pusher-signature"),
                                  body=req["body"].decode("utf-8"))
    assert data is not None, f"pusher.validate_webhook rejected {h} {req['body']!r}"
    assert sorted(data) == ["events", "time_ms"], data
    return data


def events_named(requests, name, channel):
    return [e for r in requests for e in validated(r)["events"] if e["name"] == name and e["channel"] == channel]


def test_receiver_and_sdk_validation_self_check(receiver):
    """The receiver hands the raw bytes to the SDK unchanged; a wrong secret is rejected (needs no server)."""
    body = json.dumps({"time_ms": int(time.time() * 1000), "events": [{"name": "channel_occupied", "channel": "c"}]})
    sig = hmac.new(APP["secret"].encode(), body.encode(), hashlib.sha256).hexdigest()
    req = urllib.request.Request(receiver.url(), data=body.encode(), method="POST", headers={
        "Content-Type": "application/json", "X-Pusher-Key": APP["key"], "X-Pusher-Signature": sig})
    with urllib.request.urlopen(req, timeout=5) as r:
        assert r.status == 200
    [got] = receiver.requests
    assert validated(got)["events"] == [{"name": "channel_occupied", "channel": "c"}]
    assert sdk("wrong-secret").validate_webhook(key=APP["key"], signature=sig, body=body) is None


def test_http_webhooks_validate_with_python_sdk(receiver):
    apps = [{"id": APP["id"], "key": APP["key"], "secret": APP["secret"], "enabled": True,
             "webhooks": [{"url": receiver.url("/hook"), "event_types": ["channel_occupied", "channel_vacated"],
                           "headers": {"X-Custom": "py"}}]}]
    with run_server(apps=apps) as srv:
        ws = ws_subscribe(srv.port, "py-hook")
        occ = receiver.wait(lambda rs: events_named(rs, "channel_occupied", "py-hook"), what="channel_occupied")
        assert occ == [{"name": "channel_occupied", "channel": "py-hook"}]
        first = receiver.requests[0]
        assert first["path"] == "/hook"
        assert {k.lower(): v for k, v in first["headers"].items()}.get("x-custom") == "py"
        assert abs(validated(first)["time_ms"] - time.time() * 1000) < 5000

        left = time.time()
        ws.close()
        vac = receiver.wait(lambda rs: events_named(rs, "channel_vacated", "py-hook"), timeout=VACATED_WAIT,
                            what="channel_vacated")
        assert vac == [{"name": "channel_vacated", "channel": "py-hook"}]
        assert time.time() - left >= 2.5, "channel_vacated must come ~3 s after the last subscriber left"
        time.sleep(0.3)  # absence check: nothing after the vacated
        assert [(e["name"], e["channel"]) for r in receiver.requests for e in validated(r)["events"]] == [
            ("channel_occupied", "py-hook"), ("channel_vacated", "py-hook")]
