#!/usr/bin/env python3
"""A fault-injecting HTTP proxy in front of the local ECS endpoint (loopback only).

Each ECS API request (one with an X-Amz-Target header) meets at most one fault, drawn
from the configured rates:
- throttle: HTTP 400 ThrottlingException "Rate exceeded", as ECS answers over its limits;
- error:    HTTP 500 or 503 (half each), as during an ECS service event;
- reset:    the request reaches ECS and is processed, then the connection is dropped
            before the response: the caller cannot know whether it took effect;
- latency:  an extra delay, uniform in [0, latency-ms], on every request.
Everything else (the endpoint's test helpers) passes through untouched.

`GET /_fault_proxy/stats` returns what was injected. The proxy stops by itself after
--lifetime seconds, so a test that dies cannot leave it behind.
"""
import argparse
import asyncio
import json
import random
import time

STATS = {"requests": 0, "throttle": 0, "error": 0, "reset": 0, "delayed": 0}


async def read_request(reader):
    """Reads one HTTP/1.1 request: (head bytes, headers dict, body bytes), or None at EOF."""
    head = await reader.readuntil(b"\r\n\r\n")
    headers = {}
    for line in head.split(b"\r\n")[1:]:
        if b":" in line:
            key, value = line.split(b":", 1)
            headers[key.strip().lower().decode()] = value.strip().decode()
    body = await reader.readexactly(int(headers.get("content-length", "0") or 0))
    return head, headers, body


def response(status, reason, body, content_type="application/x-amz-json-1.1", extra=()):
    lines = [f"HTTP/1.1 {status} {reason}", f"Content-Type: {content_type}",
             f"Content-Length: {len(body)}", *extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def forward(upstream, head, body):
    """Sends one request upstream on a fresh connection; returns the raw response."""
    reader, writer = await asyncio.open_connection(*upstream)
    try:
        # NB: one request per upstream connection keeps framing trivial.
        head = head.replace(b"\r\nConnection: keep-alive", b"").replace(b"\r\nconnection: keep-alive", b"")
        head = head[:-4] + b"\r\nConnection: close\r\n\r\n"
        writer.write(head + body)
        await writer.drain()
        return await reader.read()
    finally:
        writer.close()


async def handle(client_reader, client_writer, args, rng):
    try:
        while True:
            try:
                head, headers, body = await read_request(client_reader)
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            if head.startswith(b"GET /_fault_proxy/stats"):
                client_writer.write(response(200, "OK", json.dumps(STATS).encode(), "application/json"))
                await client_writer.drain()
                return
            if "x-amz-target" not in headers:
                client_writer.write(await forward(args.upstream, head, body))
                await client_writer.drain()
                return
            STATS["requests"] += 1
            if args.latency_ms > 0:
                STATS["delayed"] += 1
                await asyncio.sleep(rng.uniform(0, args.latency_ms) / 1000)
            roll = rng.random()
            if roll < args.throttle:
                STATS["throttle"] += 1
                payload = json.dumps({"__type": "ThrottlingException", "message": "Rate exceeded"}).encode()
                client_writer.write(response(400, "Bad Request", payload, extra=["x-amzn-ErrorType: ThrottlingException"]))
            elif roll < args.throttle + args.error:
                STATS["error"] += 1
                status, reason = rng.choice([(500, "Internal Server Error"), (503, "Service Unavailable")])
                payload = json.dumps({"__type": "ServerException", "message": "injected server error"}).encode()
                client_writer.write(response(status, reason, payload, extra=["x-amzn-ErrorType: ServerException"]))
            elif roll < args.throttle + args.error + args.reset:
                STATS["reset"] += 1
                await forward(args.upstream, head, body)
                client_writer.transport.abort()
                return
            else:
                client_writer.write(await forward(args.upstream, head, body))
            await client_writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        return
    finally:
        if not client_writer.is_closing():
            client_writer.close()


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--upstream", required=True, help="host:port of the ECS endpoint")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--throttle", type=float, default=0.0)
    parser.add_argument("--error", type=float, default=0.0)
    parser.add_argument("--reset", type=float, default=0.0)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--lifetime", type=float, default=900.0)
    args = parser.parse_args()
    host, port = args.upstream.rsplit(":", 1)
    assert host in ("127.0.0.1", "localhost"), "loopback only"
    args.upstream = (host, int(port))
    rng = random.Random(args.seed)
    server = await asyncio.start_server(lambda r, w: handle(r, w, args, rng), "127.0.0.1", args.port)
    print(f"fault proxy on 127.0.0.1:{args.port} -> {args.upstream}", flush=True)
    deadline = time.monotonic() + args.lifetime
    async with server:
        while time.monotonic() < deadline:
            await asyncio.sleep(1)


if __name__ == "__main__":
    asyncio.run(main())
