"""The official Python `pusher` SDK against sockudo (SHARDS=2): trigger to raw
websocket subscribers on both shards, and the REST reads (channels_info,
channel_info, users_info) with presence members joined on both shards."""
import hashlib
import hmac
import json
import threading
import time

import pusher
import pytest
import websocket

from conftest import APP

class Client:
    """A raw websocket-client connection; a reader thread collects the frames."""

    def __init__(self, port):
        self.ws = websocket.create_connection(
            f"ws://127.0.0.1:{port}/app/{APP['key']}?protocol=7&client=py&version=1.0", timeout=5)
        headers = self.ws.getheaders() or {}
        self.shard = headers.get("x-sockudo-shard")
        self.messages = []
        self.cond = threading.Condition()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()
        est = self.wait(lambda m: m["event"] == "pusher:connection_established")
        self.socket_id = json.loads(est["data"])["socket_id"]

    def _read(self):
        while True:
            try:
                raw = self.ws.recv()
            except Exception:
                return
            if not raw:
                return
            msg = json.loads(raw)
            if isinstance(msg.get("data"), str):
                try:
                    msg["parsed"] = json.loads(msg["data"])
                except ValueError:
                    msg["parsed"] = msg["data"]
            else:
                msg["parsed"] = msg.get("data")
            with self.cond:
                self.messages.append(msg)
                self.cond.notify_all()

    def wait(self, pred, timeout=5.0, start=0):
        deadline = time.time() + timeout
        with self.cond:
            while True:
                for m in self.messages[start:]:
                    if pred(m):
                        return m
                left = deadline - time.time()
                assert left > 0, f"timed out; got {self.messages}"
                self.cond.wait(left)

    def send(self, obj):
        self.ws.send(json.dumps(obj))

    def subscribe(self, channel, **extra):
        start = len(self.messages)
        self.send({"event": "pusher:subscribe", "data": {"channel": channel, **extra}})
        m = self.wait(lambda m: (m["event"] == "pusher_internal:subscription_succeeded" and m.get("channel") == channel)
                      or m["event"] == "pusher:error", start=start)
        assert m["event"] == "pusher_internal:subscription_succeeded", m
        return m

    def join_presence(self, channel, user_id, user_info):
        channel_data = json.dumps({"user_id": user_id, "user_info": user_info})
        to_sign = f"{self.socket_id}:{channel}:{channel_data}"
        sig = hmac.new(APP["secret"].encode(), to_sign.encode(), hashlib.sha256).hexdigest()
        return self.subscribe(channel, auth=f"{APP['key']}:{sig}", channel_data=channel_data)

    def close(self):
        try:
            self.ws.close()
        except Exception:
            pass


@pytest.fixture
def clients(server):
    made = []

    def per_shard(count=1):
        by = {"0": [], "1": []}
        spare = []
        for _ in range(128):
            if all(len(v) >= count for v in by.values()):
                break
            c = Client(server.port)
            made.append(c)
            if c.shard in by and len(by[c.shard]) < count:
                by[c.shard].append(c)
            else:
                spare.append(c)
        for c in spare:
            c.close()
        assert all(len(v) >= count for v in by.values()), f"could not get {count} connection(s) per shard: {by}"
        return by

    yield per_shard
    for c in made:
        c.close()


@pytest.fixture
def sdk(server):
    client = pusher.Pusher(app_id=APP["id"], key=APP["key"], secret=APP["secret"],
                           host="127.0.0.1", port=server.port, ssl=False, timeout=5)
    # A fresh TCP connection per request (no keep-alive), so the kernel spreads the SDK's
    # calls over both shards; record which shard answered each one.
    session = client._pusher_client.http.session
    session.headers["Connection"] = "close"
    client.answered_by = []
    session.hooks["response"].append(lambda r, *a, **k: client.answered_by.append(r.headers.get("x-sockudo-shard")))
    return client


def test_trigger_reaches_subscribers_on_both_shards(server, sdk, clients):
    by = clients()
    subs = [by["0"][0], by["1"][0]]
    for c in subs:
        c.subscribe("py-news")
    for i in range(6):
        sdk.trigger("py-news", "headline", {"i": i})
    sdk.trigger(["py-news", "py-other"], "multi", "plain string")
    for c in subs:
        c.wait(lambda m: m["event"] == "multi")
        got = [m["parsed"] for m in c.messages if m["event"] == "headline" and m.get("channel") == "py-news"]
        assert got == [{"i": i} for i in range(6)], f"shard {c.shard}"
        multi = [m for m in c.messages if m["event"] == "multi"]
        assert len(multi) == 1 and multi[0]["data"] == "plain string"


def test_trigger_socket_id_exclusion(server, sdk, clients):
    by = clients()
    a, b = by["0"][0], by["1"][0]
    a.subscribe("py-excl")
    b.subscribe("py-excl")
    sdk.trigger("py-excl", "e", {"x": 1}, socket_id=a.socket_id)
    sdk.trigger("py-excl", "done", {})
    a.wait(lambda m: m["event"] == "done")
    b.wait(lambda m: m["event"] == "done")
    assert [m for m in a.messages if m["event"] == "e"] == []
    assert [m["parsed"] for m in b.messages if m["event"] == "e"] == [{"x": 1}]


def test_presence_reads_across_shards(server, sdk, clients):
    by = clients(2)
    (a0, b0), (a1, b1) = by["0"], by["1"]
    a0.join_presence("presence-x", "alice", {"name": "Alice"})
    a1.join_presence("presence-x", "bob", {"name": "Bob"})
    ok = b1.join_presence("presence-x", "alice", {"name": "Alice"})  # second socket of alice
    assert ok["parsed"]["presence"]["count"] == 2
    assert sorted(ok["parsed"]["presence"]["ids"]) == ["alice", "bob"]
    b0.join_presence("presence-y", "carol", {})
    b0.subscribe("py-public")

    # Several calls: the SDK's requests land on both shards; every answer must be the whole-server one.
    for i in range(40):
        if i >= 6 and set(sdk.answered_by) >= {"0", "1"}:
            break
        info = sdk.channels_info(prefix_filter="presence-", attributes=["user_count"])
        assert info == {"channels": {"presence-x": {"user_count": 2}, "presence-y": {"user_count": 1}}}

        one = sdk.channel_info("presence-x", ["user_count"])
        assert one["occupied"] is True
        assert one["user_count"] == 2

        users = sdk.users_info("presence-x")
        assert sorted(u["id"] for u in users["users"]) == ["alice", "bob"]

    assert set(sdk.answered_by) == {"0", "1"}, f"REST reads never answered by both shards: {sdk.answered_by}"

    allc = sdk.channels_info()
    assert sorted(allc["channels"]) == ["presence-x", "presence-y", "py-public"]
    counts = sdk.channel_info("presence-x", ["subscription_count"])
    assert counts["subscription_count"] == 3
    assert sdk.channel_info("nobody-here")["occupied"] is False

    with pytest.raises(pusher.errors.PusherBadRequest):
        sdk.channels_info(attributes=["user_count"])  # user_count needs a presence- prefix
    with pytest.raises(pusher.errors.PusherBadRequest):
        sdk.users_info("py-public")

    # Leaving updates the answers.
    a1.close()
    time.sleep(0.3)
    for _ in range(4):
        assert sdk.channel_info("presence-x", ["user_count"])["user_count"] == 1
        assert [u["id"] for u in sdk.users_info("presence-x")["users"]] == ["alice"]
