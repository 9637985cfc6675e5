"""Standalone ECS tasks (RunTask, DescribeTasks, StopTask) as ECS runs them, on top of moto.

moto starts a task RUNNING and leaves it there, ignores RunTask's clientToken and reports
one container with exit code 0. ECS does none of that; these rules restore what the
operator's EcsTask relies on, each citing the API reference:

- A task "moves through PROVISIONING, PENDING, ACTIVATING, RUNNING, DEACTIVATING,
  STOPPING, DEPROVISIONING, STOPPED" over time (Amazon ECS task lifecycle); here
  PROVISIONING and PENDING for a moment each, then RUNNING for as long as the test says,
  then STOPPED.
- Exit codes are the test's to choose, by the environment a container is given (task
  definition or RunTask's containerOverrides), a convention of this endpoint:
  `ECS_TEST_EXIT_CODE` (default 0) is the code the container exits with and
  `ECS_TEST_RUN_SECONDS` (default 1) how long it runs. A task stops when its first
  essential container exits ("If the essential parameter of a container is marked as true,
  and that container fails or stops for any reason, all other containers that are part of
  the task are stopped", ContainerDefinition.essential): stopCode EssentialContainerExited,
  stoppedReason "Essential container in task exited"; the others exit 143 (SIGTERM, as
  `docker stop`) unless they finished first.
- An image tagged `:cannotpull` never starts: stopCode TaskFailedToStart, the container's
  reason and the task's stoppedReason "CannotPullContainerError: ...", no exit code.
- StopTask stops the task's containers (exit 143) after a moment STOPPING, stopCode
  UserInitiated, stoppedReason the reason given ("Task stopped by user" when none).
- RunTask.clientToken: "An identifier that you provide to ensure the idempotency of the
  request": a repeat answers with the tasks the first call started.
- DescribeTasks.tasks: "A list of up to 100 task IDs or full ARN entries."
- A container's `memory` "is optional for tasks using the Fargate launch type" (the task's
  `memory` counts); moto fails RunTask with a 500 on such a task definition.
- ListTasks.desiredStatus: "The default status filter is RUNNING"; moto lists every task.
- An awsvpc task in a VPC without DNS hostnames has an ENI without a private DNS name
  (moto's ENI then lacks the attribute and RunTask fails with a 500).
- A task that needs container instances (EC2, EXTERNAL) in a cluster without any is not
  started: RunTask answers `failures[]` with reason "No Container Instances were found in
  your cluster." (API failure reasons), where moto fails with a 500.

Test controls: POST /_ecs_operator/task-answers delays RunTask's answer after the tasks
started, so that a test can kill the operator between RunTask and its status write; POST
/_ecs_operator/forget-stopped-tasks makes ECS forget a cluster's stopped tasks, as it does
about an hour after they stop.
"""
import datetime
import threading
import time

from moto.core.responses import ActionResult
from moto.ecs import models, responses
from moto.ecs.exceptions import InvalidParameterException
from strict_ecs import for_moto_validation

LOCK = threading.RLock()
PROVISIONING_SECONDS = 0.3
PENDING_SECONDS = 0.3
DEFAULT_RUN_SECONDS = 1.0
STOPPING_SECONDS = 0.5
SIGTERM = 143

# RunTask clientToken -> the ARNs of the tasks it started.
STARTED_BY_TOKEN = {}
# Cluster name -> [seconds, times]: the next `times` RunTask answers in that cluster come
# `seconds` after ECS started the tasks (a test kills the operator in between).
ANSWER_DELAYS = {}


def delay_answers(body):
    """Test control: `{"cluster": name, "answerDelaySeconds": s, "times": n}`."""
    with LOCK:
        ANSWER_DELAYS[body["cluster"]] = [float(body["answerDelaySeconds"]), int(body.get("times", 1))]


def forget_stopped(body):
    """Test control: `{"cluster": name, "region": r}`: ECS forgets the cluster's STOPPED tasks, as it
    does about an hour after they stopped (DescribeTasks then answers MISSING)."""
    backend = models.ecs_backends[body.get("account", "123456789012")][body["region"]]
    with LOCK:
        tasks = backend.tasks.get(body["cluster"], {})
        for arn, task in list(tasks.items()):
            advance(task)
            if (getattr(task, "strict", None) or {}).get("final"):
                del tasks[arn]


def answer_delay(cluster_name):
    with LOCK:
        delay = ANSWER_DELAYS.get(cluster_name)
        if not delay or delay[1] <= 0:
            return 0.0
        delay[1] -= 1
        return delay[0]


def environment_of(container_definition, overrides):
    """A container's environment: its definition's, then RunTask's override for it."""
    env = {e["name"]: e["value"] for e in container_definition.get("environment") or []}
    for override in (overrides or {}).get("containerOverrides") or []:
        if override.get("name") == container_definition.get("name"):
            env.update({e["name"]: e["value"] for e in override.get("environment") or []})
    return env


def plan_containers(task_definition, overrides):
    """What each container will do: exit code, how long it runs, whether it can start."""
    plans = []
    for definition in task_definition.container_definitions:
        env = environment_of(definition, overrides)
        plans.append({
            "name": definition.get("name"),
            "image": definition.get("image", ""),
            "essential": definition.get("essential", True),
            "exit_code": int(env.get("ECS_TEST_EXIT_CODE", "0")),
            "run_seconds": float(env.get("ECS_TEST_RUN_SECONDS", str(DEFAULT_RUN_SECONDS))),
            "cannot_pull": definition.get("image", "").endswith(":cannotpull"),
        })
    return plans


def now_utc():
    return datetime.datetime.now(datetime.timezone.utc)


def advance(task):
    """Brings a task to where ECS would have it by now."""
    strict = getattr(task, "strict", None)
    if strict is None or strict.get("final"):
        return
    elapsed = time.monotonic() - strict["created"]
    running_from = PROVISIONING_SECONDS + PENDING_SECONDS
    if any(c["cannot_pull"] for c in strict["containers"]) and elapsed >= running_from:
        image = next(c["image"] for c in strict["containers"] if c["cannot_pull"])
        reason = f"CannotPullContainerError: pull image manifest has been retried 1 time(s): {image}: not found"
        finish(task, "TaskFailedToStart", reason, {c["name"]: (None, reason) for c in strict["containers"]})
        return
    if strict.get("stop_requested") is not None:
        reason, at = strict["stop_requested"]
        if time.monotonic() - at < STOPPING_SECONDS:
            strict["status"] = "STOPPING"
            return
        codes = {c["name"]: (SIGTERM, None) for c in strict["containers"]}
        finish(task, "UserInitiated", reason, codes)
        return
    if elapsed < PROVISIONING_SECONDS:
        strict["status"] = "PROVISIONING"
        return
    if elapsed < running_from:
        strict["status"] = "PENDING"
        return
    strict["status"] = "RUNNING"
    strict.setdefault("started_at", now_utc())
    ran = elapsed - running_from
    essential_exits = [c for c in strict["containers"] if c["essential"] and ran >= c["run_seconds"]]
    if not essential_exits:
        return
    codes = {}
    for container in strict["containers"]:
        done = ran >= container["run_seconds"]
        codes[container["name"]] = (container["exit_code"] if done else SIGTERM, None)
    finish(task, "EssentialContainerExited", "Essential container in task exited", codes)


def finish(task, stop_code, reason, codes):
    """Stops the task: STOPPED, with the stop code, reason and each container's exit."""
    strict = task.strict
    strict.update(status="STOPPED", final=True, stop_code=stop_code, stopped_reason=reason)
    strict.setdefault("started_at", None)
    strict["stopped_at"] = now_utc()
    strict["exits"] = codes
    # ListTasks filters on moto's own fields.
    task.last_status = task.desired_status = "STOPPED"


def render(task):
    """The task as DescribeTasks reports it."""
    strict = task.strict
    status = strict["status"]
    containers = []
    for container in strict["containers"]:
        entry = {
            "containerArn": f"{task.task_arn}/{container['name']}",
            "taskArn": task.task_arn,
            "name": container["name"],
            "image": container["image"],
            "lastStatus": {"STOPPED": "STOPPED", "RUNNING": "RUNNING", "STOPPING": "RUNNING"}.get(status, "PENDING"),
        }
        exit_code, reason = strict.get("exits", {}).get(container["name"], (None, None))
        if exit_code is not None:
            entry["exitCode"] = exit_code
        if reason:
            entry["reason"] = reason
        containers.append(entry)
    rendered = {
        "taskArn": task.task_arn,
        "clusterArn": task.cluster_arn,
        "taskDefinitionArn": task.task_definition_arn,
        "lastStatus": status,
        "desiredStatus": "STOPPED" if status == "STOPPED" or strict.get("stop_requested") is not None else "RUNNING",
        "launchType": task.launch_type,
        "group": task.group,
        "startedBy": task.started_by,
        "overrides": task.overrides,
        "containers": containers,
        "createdAt": strict["created_at"],
        "tags": task.tags,
        "attachments": task.attachments,
    }
    if strict.get("started_at"):
        rendered["startedAt"] = strict["started_at"]
    if status == "STOPPED":
        rendered.update(stopCode=strict["stop_code"], stoppedReason=strict["stopped_reason"],
                        stoppedAt=strict["stopped_at"])
    return {k: v for k, v in rendered.items() if v is not None}


def needs_container_instances(backend, cluster, request):
    """Whether ECS places this run on container instances (not Fargate)."""
    strategy = request.get("capacityProviderStrategy")
    if not request.get("launchType") and not strategy:
        strategy = cluster.default_capacity_provider_strategy
    if request.get("launchType"):
        return request["launchType"] != "FARGATE"
    return not (strategy and strategy[0]["capacityProvider"] in ("FARGATE", "FARGATE_SPOT"))


def without_container_instances(backend, cluster):
    instances = backend.container_instances.get(cluster.name, {}).values()
    return not any(i.status == "ACTIVE" for i in instances)


def resource_requirements(task_definition):
    """moto's placement arithmetic, with a container's omitted memory counted as 0."""
    requirements = {"CPU": 0, "MEMORY": 0, "PORTS": [], "PORTS_UDP": []}
    for container in task_definition.container_definitions:
        requirements["CPU"] += container.get("cpu") or 0
        requirements["MEMORY"] += container.get("memory") or container.get("memoryReservation") or 0
        for mapping in container.get("portMappings") or []:
            if mapping.get("hostPort"):
                key = "PORTS_UDP" if mapping.get("protocol") == "udp" else "PORTS"
                requirements[key].append(mapping["hostPort"])
    return requirements


def run_task(self):
    request = self._get_params()
    token = request.get("clientToken")
    backend = self.ecs_backend
    with LOCK:
        if token and token in STARTED_BY_TOKEN:
            cluster = backend._get_cluster(request.get("cluster", "default"))
            known = [find_task(backend, cluster.name, arn) for arn in STARTED_BY_TOKEN[token]]
            for task in known:
                advance(task)
            return ActionResult({"tasks": [render(t) for t in known], "failures": []})
        cluster = backend._get_cluster(request.get("cluster", "default"))
        if needs_container_instances(backend, cluster, request) and without_container_instances(backend, cluster):
            failure = {"arn": cluster.arn, "reason": "No Container Instances were found in your cluster."}
            return ActionResult({"tasks": [], "failures": [failure]})
        tasks = backend.run_task(
            request.get("cluster", "default"), request.get("taskDefinition"), request.get("count") or 1,
            request.get("overrides"), request.get("startedBy"), request.get("tags"), request.get("launchType"),
            for_moto_validation(request.get("networkConfiguration")), request.get("group"), request.get("platformVersion"),
            request.get("capacityProviderStrategy"))
        for task in tasks:
            definition = backend.describe_task_definition(task.task_definition_arn)
            task.strict = {
                "created": time.monotonic(),
                "created_at": now_utc(),
                "status": "PROVISIONING",
                "containers": plan_containers(definition, request.get("overrides")),
            }
        if token:
            STARTED_BY_TOKEN[token] = [t.task_arn for t in tasks]
        answer = {"tasks": [render(t) for t in tasks], "failures": []}
        delay = answer_delay(tasks[0].cluster_name) if tasks else 0.0
    time.sleep(delay)
    return ActionResult(answer)


def find_task(backend, cluster_name, task_str):
    """A task by its ARN or ID (moto keys tasks by ARN)."""
    task_id = task_str.split("/")[-1]
    for arn, task in backend.tasks.get(cluster_name, {}).items():
        if arn == task_str or arn.split("/")[-1] == task_id:
            return task
    return None


def describe_tasks(self):
    backend = self.ecs_backend
    requested = self._get_param("tasks", [])
    if len(requested) > 100:
        raise InvalidParameterException("tasks can have at most 100 items.")
    with LOCK:
        cluster = backend._get_cluster(self._get_param("cluster", "default"))
        tasks, failures = [], []
        for task_str in requested:
            task = find_task(backend, cluster.name, task_str)
            if task is None or getattr(task, "strict", None) is None:
                failures.append({"arn": task_str, "reason": "MISSING"})
                continue
            advance(task)
            tasks.append(render(task))
        return ActionResult({"tasks": tasks, "failures": failures})


def stop_task(self):
    backend = self.ecs_backend
    with LOCK:
        cluster = backend._get_cluster(self._get_param("cluster", "default"))
        task = find_task(backend, cluster.name, self._get_param("task"))
        if task is None or getattr(task, "strict", None) is None:
            raise InvalidParameterException("The referenced task was not found.")
        advance(task)
        if not task.strict.get("final"):
            task.strict["stop_requested"] = (self._get_param("reason") or "Task stopped by user", time.monotonic())
            task.desired_status = "STOPPED"
            advance(task)
        return ActionResult({"task": render(task)})


def list_tasks(self):
    with LOCK:
        # NB: tasks move on with time, whoever looks.
        for tasks in self.ecs_backend.tasks.values():
            for task in tasks.values():
                advance(task)
    tasks = self.ecs_backend.list_tasks(
        self._get_param("cluster", "default"), self._get_param("containerInstance"), self._get_param("family"),
        self._get_param("startedBy"), self._get_param("serviceName"), self._get_param("desiredStatus") or "RUNNING")
    return ActionResult({"taskArns": [t.task_arn for t in tasks]})


def apply():
    """Replaces moto's task handlers with these; called once at start."""
    handlers = responses.EC2ContainerServiceResponse
    handlers.run_task = run_task
    handlers.describe_tasks = describe_tasks
    handlers.stop_task = stop_task
    handlers.list_tasks = list_tasks
    models.EC2ContainerServiceBackend._calculate_task_resource_requirements = staticmethod(resource_requirements)
    models.Task.strict = None
    from moto.ec2.models.elastic_network_interfaces import NetworkInterface
    NetworkInterface.private_dns_name = None
