#!/usr/bin/env python3
"""The local ECS endpoint: moto's server on a loopback port, with two additions for tests.

- endpoint_patches.py restores real ECS behaviour where moto diverges and a test depends on it.
- CallCounter counts the ECS API calls each client makes, by operation: the tests measure
  "zero writes at idle" and "one RegisterTaskDefinition per change" at the endpoint itself.
  A client is the app id in the SDK's user agent (AWS_SDK_UA_APP_ID, which each test sets
  for its operator process); `GET /_ecs_operator/calls?client=ID` returns its counts.
- `GET /_ecs_operator/created?prefix=P` returns how often CreateService really created each
  service whose "cluster/name" starts with P (idempotent repeats are not creations).
"""
import argparse
import collections
import json
import re
import threading
from urllib.parse import parse_qs

from moto.server import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import run_simple

# NB: not named moto_*: moto reads an error class's module name to find its service.
import endpoint_patches

ECS_TARGET = "AmazonEC2ContainerServiceV20141113."
APP_ID = re.compile(r"(?:^|\s)app/(\S+)")


class CallCounter:
    """WSGI middleware counting ECS operations per client app id."""

    def __init__(self, app):
        self.app = app
        self.counts = collections.defaultdict(collections.Counter)
        self.lock = threading.Lock()

    def __call__(self, environ, start_response):
        if environ.get("PATH_INFO") == "/_ecs_operator/calls":
            client = parse_qs(environ.get("QUERY_STRING", "")).get("client", [""])[0]
            with self.lock:
                body = json.dumps(dict(self.counts.get(client, {}))).encode()
            start_response("200 OK", [("Content-Type", "application/json"),
                                      ("Content-Length", str(len(body)))])
            return [body]
        if environ.get("PATH_INFO") == "/_ecs_operator/created":
            prefix = parse_qs(environ.get("QUERY_STRING", "")).get("prefix", [""])[0]
            with endpoint_patches.CREATED_LOCK:
                created = {k: n for k, n in endpoint_patches.CREATED.items() if k.startswith(prefix)}
            body = json.dumps(created).encode()
            start_response("200 OK", [("Content-Type", "application/json"),
                                      ("Content-Length", str(len(body)))])
            return [body]
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        if target.startswith(ECS_TARGET):
            agent = environ.get("HTTP_X_AMZ_USER_AGENT", "") + " " + environ.get("HTTP_USER_AGENT", "")
            match = APP_ID.search(agent)
            client = match.group(1) if match else ""
            with self.lock:
                self.counts[client][target[len(ECS_TARGET):]] += 1
        return self.app(environ, start_response)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    endpoint_patches.apply()
    app = DomainDispatcherApplication(create_backend_app)
    run_simple("127.0.0.1", args.port, CallCounter(app), threaded=True,
               request_handler=MotoRequestHandler)


if __name__ == "__main__":
    main()
