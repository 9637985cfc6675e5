"""ECS's request throttling, enforced by the endpoint for the clients that ask for it.

ECS meters API calls with token buckets per account and region, one per category of
actions, shared by everything that calls it ("Request throttling for the Amazon ECS API",
the API reference; the table in ECS-NOTES.md, which the operator's client-side buckets
copy): a full bucket allows a burst, then calls refill at a sustained rate, and a call
over the limit is answered HTTP 400 ThrottlingException "Rate exceeded". moto never
throttles; with this mode on, the endpoint does.

Each client app id (the SDK's AWS_SDK_UA_APP_ID, as CallCounter counts) stands for one
account, so that a test's operator meets the buckets while the tests beside it do not.
`POST /_ecs_operator/buckets {"client": ID}` turns them on for that client, full, with
ECS's limits or `"limits": {"service-read": [burst, per_second], ...}`; `"neighbour":
{"service-read": 0.5}` adds another tool in the same account spending that share of a
category's sustained rate for `"seconds"` (default 600, at most 3600; it stops by itself);
`"enabled": false` turns it all off. `GET /_ecs_operator/buckets?client=ID` reports the
calls throttled by operation and, per category, the neighbour's attempts and how many
were throttled.
"""
import threading
import time

# category: (actions, burst, sustained per second), as ECS-NOTES.md's table.
CATEGORIES = {
    "cluster-modify": ({"CreateCluster", "DeleteCluster", "UpdateCluster", "PutClusterCapacityProviders",
                        "UpdateClusterSettings"}, 20, 1.0),
    "cluster-read": ({"DescribeClusters", "ListClusters"}, 50, 20.0),
    "task-definition-modify": ({"RegisterTaskDefinition", "DeregisterTaskDefinition"}, 20, 1.0),
    "task-definition-read": ({"DescribeTaskDefinition", "ListTaskDefinitions", "ListTaskDefinitionFamilies"},
                             50, 20.0),
    "task-definition-delete": ({"DeleteTaskDefinitions"}, 5, 1.0),
    "tag-modify": ({"TagResource", "UntagResource"}, 20, 10.0),
    "tag-read": ({"ListTagsForResource"}, 50, 20.0),
    "service-modify": ({"CreateService", "DeleteService", "UpdateService"}, 50, 5.0),
    "service-read": ({"DescribeServices", "ListServices"}, 100, 20.0),
}
NEIGHBOUR_TICK = 0.05
MAX_NEIGHBOUR_SECONDS = 3600


def category_of(operation):
    return next((name for name, (actions, _, _) in CATEGORIES.items() if operation in actions), None)


class Bucket:
    """One token bucket: `burst` calls at once, refilled at `rate` per second."""

    def __init__(self, burst, rate):
        self.burst, self.rate = float(burst), float(rate)
        self.tokens, self.at = float(burst), time.monotonic()

    def take(self):
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True


class Account:
    """The buckets of one client, what they refused, and its neighbour."""

    def __init__(self, limits):
        self.buckets = {name: Bucket(*limits.get(name, (burst, rate)))
                        for name, (_, burst, rate) in CATEGORIES.items()}
        self.throttled = {}
        self.neighbour = {}
        self.stop = threading.Event()


ACCOUNTS = {}
LOCK = threading.Lock()


def configure(body):
    """POST /_ecs_operator/buckets (see the module's doc string)."""
    client = body["client"]
    with LOCK:
        old = ACCOUNTS.pop(client, None)
        if old:
            old.stop.set()
        if body.get("enabled", True) is False:
            return
        account = Account({name: tuple(v) for name, v in body.get("limits", {}).items()})
        ACCOUNTS[client] = account
    shares = body.get("neighbour", {})
    if shares:
        seconds = min(float(body.get("seconds", 600)), MAX_NEIGHBOUR_SECONDS)
        account.neighbour = {name: {"share": share, "attempts": 0, "throttled": 0} for name, share in shares.items()}
        threading.Thread(target=run_neighbour, args=(account, seconds), daemon=True).start()


def run_neighbour(account, seconds):
    """Another tool in the account: spends `share` of each named category's sustained rate,
    evenly, until `seconds` have passed or the client's buckets are reconfigured."""
    owed = {name: 0.0 for name in account.neighbour}
    deadline = time.monotonic() + seconds
    while not account.stop.wait(NEIGHBOUR_TICK) and time.monotonic() < deadline:
        with LOCK:
            for name, spent in account.neighbour.items():
                bucket = account.buckets[name]
                owed[name] += spent["share"] * bucket.rate * NEIGHBOUR_TICK
                while owed[name] >= 1.0:
                    owed[name] -= 1.0
                    spent["attempts"] += 1
                    if not bucket.take():
                        spent["throttled"] += 1


def admit(client, operation):
    """True when the call may go on; False when ECS would answer ThrottlingException."""
    category = category_of(operation)
    if category is None:
        return True
    with LOCK:
        account = ACCOUNTS.get(client)
        if account is None:
            return True
        if account.buckets[category].take():
            return True
        account.throttled[operation] = account.throttled.get(operation, 0) + 1
        return False


def report(client):
    """GET /_ecs_operator/buckets?client=ID."""
    with LOCK:
        account = ACCOUNTS.get(client)
        if account is None:
            return {}
        return {"throttled": dict(account.throttled),
                "neighbour": {name: {k: v for k, v in spent.items() if k != "share"}
                              for name, spent in account.neighbour.items()}}
