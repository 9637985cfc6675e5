#!/usr/bin/env python3
"""The local ECS endpoint: moto's server on a loopback port, made strict, with controls
for tests.

- strict_ecs.py makes moto reject, rewrite and take time as ECS does (its rules cite the
  API reference); strict_tasks.py does the same for standalone tasks (RunTask,
  DescribeTasks, StopTask) and strict_scheduler.py for EventBridge Scheduler's schedule
  expressions; on for every test and the demo. strict_capacity.py does it for capacity
  providers (Managed Instances ones, names, states that take time, cluster scoping, in-use
  refusals).
- CallCounter counts the ECS API calls (and EventBridge Scheduler's schedule calls) each
  client makes, by operation: the tests measure
  "zero writes at idle" and "one RegisterTaskDefinition per change" at the endpoint itself.
  A client is the app id in the SDK's user agent (AWS_SDK_UA_APP_ID, which each test sets
  for its operator process); `GET /_ecs_operator/calls?client=ID` returns its counts and
  `GET /_ecs_operator/requests?client=ID&operation=OP` the request bodies it sent.
- `GET /_ecs_operator/created?prefix=P` returns how often CreateService really created each
  service whose "cluster/name" starts with P (idempotent repeats are not creations).
- `POST /_ecs_operator/timing`, `/inject`, `/broken` and `/lambda` steer strict_ecs (see
  there); `POST /_ecs_operator/provider-timing` strict_capacity.
- `POST /_ecs_operator/buckets` enforces ECS's request throttling for a client (ecs_buckets.py),
  optionally with a neighbour spending part of it; `GET /_ecs_operator/buckets?client=ID`
  reports what was throttled.
"""
import argparse
import collections
import io
import json
import re
import threading
from urllib.parse import parse_qs

from moto.server import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import run_simple

# NB: not named moto_*: moto reads an error class's module name to find its service.
import ecs_buckets
import strict_capacity
import strict_ecs
import strict_scheduler
import strict_tasks

ECS_TARGET = "AmazonEC2ContainerServiceV20141113."
APP_ID = re.compile(r"(?:^|\s)app/(\S+)")
# Write requests kept per client, for tests that check exactly what was sent.
KEPT_REQUESTS = {"CreateService", "UpdateService", "DeleteService", "RunTask", "DescribeTasks", "StopTask"}
CONTROLS = {
    "/_ecs_operator/timing": strict_ecs.set_timing,
    "/_ecs_operator/inject": strict_ecs.inject,
    "/_ecs_operator/broken": strict_ecs.declare_broken,
    "/_ecs_operator/lambda": strict_ecs.set_lambda_verdict,
    "/_ecs_operator/task-answers": strict_tasks.delay_answers,
    "/_ecs_operator/forget-stopped-tasks": strict_tasks.forget_stopped,
    "/_ecs_operator/provider-timing": strict_capacity.set_provider_timing,
    "/_ecs_operator/buckets": ecs_buckets.configure,
}


def answer(start_response, status, body, headers=()):
    data = json.dumps(body).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(data))), *headers])
    return [data]


class CallCounter:
    """WSGI middleware counting ECS operations per client app id, serving the test controls,
    and answering injected errors before moto sees the call."""

    def __init__(self, app):
        self.app = app
        self.counts = collections.defaultdict(collections.Counter)
        self.requests = collections.defaultdict(list)
        self.lock = threading.Lock()

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO")
        query = parse_qs(environ.get("QUERY_STRING", ""))
        if path == "/_ecs_operator/calls":
            with self.lock:
                counts = dict(self.counts.get(query.get("client", [""])[0], {}))
            return answer(start_response, "200 OK", counts)
        if path == "/_ecs_operator/requests":
            key = (query.get("client", [""])[0], query.get("operation", [""])[0])
            with self.lock:
                kept = list(self.requests.get(key, []))
            return answer(start_response, "200 OK", kept)
        if path == "/_ecs_operator/buckets" and environ.get("REQUEST_METHOD") == "GET":
            return answer(start_response, "200 OK", ecs_buckets.report(query.get("client", [""])[0]))
        if path == "/_ecs_operator/created":
            prefix = query.get("prefix", [""])[0]
            with strict_ecs.LOCK:
                created = {k: n for k, n in strict_ecs.CREATED.items() if k.startswith(prefix)}
            return answer(start_response, "200 OK", created)
        if path in CONTROLS and environ.get("REQUEST_METHOD") == "POST":
            CONTROLS[path](json.loads(read_body(environ) or b"{}"))
            return answer(start_response, "200 OK", {})
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        agent = environ.get("HTTP_X_AMZ_USER_AGENT", "") + " " + environ.get("HTTP_USER_AGENT", "")
        match = APP_ID.search(agent)
        client = match.group(1) if match else ""
        scheduler = scheduler_operation(environ.get("REQUEST_METHOD", ""), path or "")
        if scheduler:
            with self.lock:
                self.counts[client][scheduler] += 1
        if target.startswith(ECS_TARGET):
            operation = target[len(ECS_TARGET):]
            body = read_body(environ)
            request = json.loads(body or b"{}")
            with self.lock:
                self.counts[client][operation] += 1
                if operation in KEPT_REQUESTS:
                    self.requests[(client, operation)].append(request)
            if not ecs_buckets.admit(client, operation):
                return answer(start_response, "400 Bad Request",
                              {"__type": "ThrottlingException", "message": "Rate exceeded"},
                              [("X-Amzn-ErrorType", "ThrottlingException")])
            fault = strict_ecs.injected_error(operation, request)
            if fault:
                code, message = fault
                return answer(start_response, "400 Bad Request", {"__type": code, "message": message},
                              [("X-Amzn-ErrorType", code)])
        return self.app(environ, start_response)


def scheduler_operation(method, path):
    """The EventBridge Scheduler operation of a REST request (its API is REST, not
    X-Amz-Target), e.g. PUT /schedules/NAME is UpdateSchedule; None for anything else."""
    if path == "/schedules" and method == "GET":
        return "ListSchedules"
    if not path.startswith("/schedules/"):
        return None
    return {"POST": "CreateSchedule", "PUT": "UpdateSchedule", "GET": "GetSchedule",
            "DELETE": "DeleteSchedule"}.get(method)


def read_body(environ):
    """The request body, put back for the next reader."""
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(length) if length else b""
    environ["wsgi.input"] = io.BytesIO(body)
    return body


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    strict_ecs.apply()
    strict_tasks.apply()
    strict_capacity.apply()  # after strict_ecs and strict_tasks: it wraps their handlers
    strict_scheduler.apply()
    app = DomainDispatcherApplication(create_backend_app)
    run_simple("127.0.0.1", args.port, CallCounter(app), threaded=True,
               request_handler=MotoRequestHandler)


if __name__ == "__main__":
    main()
