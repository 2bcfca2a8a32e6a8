#!/usr/bin/env python3
"""Webhook throughput through one running sockudo: subscribes N new channels (one `channel_occupied` webhook
each) and times until a local receiver has accepted all N events. Prints `events seconds events_per_s`.

    webhook_queue.py WS_PORT RECEIVER_PORT N
The server's app (app-key) must send channel_occupied to http://127.0.0.1:RECEIVER_PORT/."""
import asyncio
import socket
import sys
import threading
import time

import websocket  # websocket-client (tests/python/requirements.txt)

ws_port, recv_port, total = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
seen = 0
done = threading.Event()
first = [None]


async def serve(reader, writer):
    global seen
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            body = await reader.readexactly(length)
            seen += body.count(b'"name":"channel_occupied"')
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
            if seen >= total:
                done.set()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


def receiver(ready):
    async def main():
        server = await asyncio.start_server(serve, "127.0.0.1", recv_port, backlog=1024)
        ready.set()
        async with server:
            await server.serve_forever()

    asyncio.run(main())


ready = threading.Event()
threading.Thread(target=receiver, args=(ready,), daemon=True).start()
ready.wait()

PER_CONNECTION = 500
sockets = []
start = time.monotonic()
for c in range(0, total, PER_CONNECTION):
    ws = websocket.create_connection(f"ws://127.0.0.1:{ws_port}/app/app-key?protocol=7")
    ws.recv()  # connection_established
    for i in range(c, min(total, c + PER_CONNECTION)):
        ws.send('{"event":"pusher:subscribe","data":{"channel":"bench-%d"}}' % i)
    sockets.append(ws)
if not done.wait(300):
    print(f"only {seen} of {total} events arrived", file=sys.stderr)
    sys.exit(1)
elapsed = time.monotonic() - start
print(f"{total} {elapsed:.2f} {total / elapsed:.0f}")
