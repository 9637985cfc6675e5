//! EcsTask, a run of ECS tasks to completion: a migration that succeeds (Complete, exit
//! codes in status) and is deleted after its time to live; one that fails on an exit code,
//! one whose image cannot be pulled and one ECS cannot place (Failed, with ECS's words); a
//! deadline that stops a task; an operator killed between RunTask and its status write that
//! starts no second task; running tasks read together and finished ones not at all;
//! deleting a running run stops its tasks unless it retains them; a task ECS has forgotten
//! fails the run.

mod common;

use common::{
    Operator, admin_client, apply_json, argo_health, calls_of, cli, ecs_calls, ecs_client, ecs_requests,
    endpoint_control, event, gone, more_calls, namespace, object, ready, wait_condition, wait_for,
};
use ecs_operator::api::{EcsCluster, EcsTask, EcsTaskDefinition};
use kube::api::Api;
use serde_json::{Value, json};

/// A cluster and a Fargate task definition `migrate` with an essential container `app` and
/// a non-essential `log`, both Ready; the subnets tasks run in.
async fn migration_bed(client: &kube::Client, ns: &str) -> Vec<String> {
    let clusters: Api<EcsCluster> = Api::namespaced(client.clone(), ns);
    let tds: Api<EcsTaskDefinition> = Api::namespaced(client.clone(), ns);
    apply_json(
        &clusters,
        &object("EcsCluster", "main", json!({"clusterName": format!("{ns}-main")})),
    )
    .await;
    let td = json!({
        "family": format!("{ns}-migrate"), "networkMode": "awsvpc", "requiresCompatibilities": ["FARGATE"],
        "cpu": "256", "memory": "512",
        "containerDefinitions": [
            {"name": "app", "image": "migrate:1"},
            {"name": "log", "image": "log:1", "essential": false,
             "environment": [{"name": "ECS_TEST_RUN_SECONDS", "value": "600"}]},
        ],
    });
    apply_json(&tds, &object("EcsTaskDefinition", "migrate", td)).await;
    ready(&clusters, "main", 30).await;
    ready(&tds, "migrate", 30).await;
    common::vpc(1, 1).0
}

/// An EcsTask of `migrate` in `main`; `app` exits with `exit_code` after `seconds`.
fn migration(name: &str, subnets: &[String], exit_code: i32, seconds: f64, extra: Value) -> Value {
    let mut spec = json!({
        "clusterRef": {"name": "main"}, "taskDefinitionRef": {"name": "migrate"}, "launchType": "FARGATE",
        "networkConfiguration": {"awsvpcConfiguration": {"subnets": subnets}},
        "overrides": {"containerOverrides": [{"name": "app", "environment": [
            {"name": "ECS_TEST_EXIT_CODE", "value": exit_code.to_string()},
            {"name": "ECS_TEST_RUN_SECONDS", "value": seconds.to_string()},
        ]}]},
    });
    for (key, value) in extra.as_object().into_iter().flatten() {
        spec[key] = value.clone();
    }
    object("EcsTask", name, spec)
}

#[tokio::test]
async fn a_migration_completes_with_its_exit_codes_and_is_deleted_after_its_ttl() {
    let client = admin_client().await;
    let ns = namespace(&client, "task-complete").await;
    let _operator = Operator::start(&ns);
    let subnets = migration_bed(&client, &ns).await;
    let tasks: Api<EcsTask> = Api::namespaced(client.clone(), &ns);

    apply_json(&tasks, &migration("migrate", &subnets, 0, 1.0, json!({}))).await;
    let (reason, message) = wait_condition(&tasks, "migrate", "Complete", "True", None, 60).await;
    assert_eq!(reason, "Complete", "{message}");
    let done = tasks.get("migrate").await.expect("get");
    let status = done.status.clone().expect("status");
    assert_eq!(status.tasks.len(), 1);
    let task = &status.tasks[0];
    assert_eq!(task.last_status.as_deref(), Some("STOPPED"));
    assert_eq!(task.stop_code.as_deref(), Some("EssentialContainerExited"));
    let exit = |name: &str| {
        task.containers
            .iter()
            .find(|c| c.name == name)
            .and_then(|c| c.exit_code)
    };
    assert_eq!((exit("app"), exit("log")), (Some(0), Some(143)), "{task:?}");
    assert_eq!(status.essential_containers, vec!["app".to_string()]);
    assert!(status.finished_at.is_some());
    let live = serde_json::to_value(&done).expect("JSON");
    assert_eq!(argo_health(&live).0, "Healthy", "{live}");
    event(&client, &ns, "migrate", "Complete", "").await;
    assert_eq!(calls_of(&ecs_calls(&ns), "RunTask"), 1);

    // Finished: no more reads of its tasks at resyncs.
    let described = calls_of(&ecs_calls(&ns), "DescribeTasks");
    more_calls(&ns, "DescribeClusters", 3).await;
    assert_eq!(
        calls_of(&ecs_calls(&ns), "DescribeTasks"),
        described,
        "a finished run costs nothing"
    );

    // `diff`: the run is done for this spec. A time to live is not a new run; a change of
    // what runs is.
    let differ = format!("{ns}-diff");
    let diff = |manifest: &Value| cli(&["diff", "-f", "-", "-n", &ns], &differ, Some(&manifest.to_string()));
    let with_ttl = migration("migrate", &subnets, 0, 1.0, json!({"ttlSecondsAfterFinished": 1}));
    for unchanged in [migration("migrate", &subnets, 0, 1.0, json!({})), with_ttl.clone()] {
        let (code, out, err) = diff(&unchanged);
        assert_eq!((code, out.as_str()), (0, ""), "{err}");
    }
    let (code, out, err) = diff(&migration("migrate", &subnets, 0, 2.0, json!({})));
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        out.contains(&format!("EcsTask {ns}/migrate: RunTask")) && out.contains("for generation 2"),
        "{out}"
    );

    // A time to live set afterwards counts from the end of the run, which is not run again:
    // the object goes.
    apply_json(&tasks, &with_ttl).await;
    gone(&tasks, "migrate", 60).await;
    assert_eq!(
        calls_of(&ecs_calls(&ns), "RunTask"),
        1,
        "a time to live is not a new run"
    );
}

#[tokio::test]
async fn a_change_of_what_runs_stops_the_run_under_way_and_runs_once_more() {
    let client = admin_client().await;
    let ns = namespace(&client, "task-rerun").await;
    let _operator = Operator::start(&ns);
    let subnets = migration_bed(&client, &ns).await;
    let tasks: Api<EcsTask> = Api::namespaced(client.clone(), &ns);
    apply_json(&tasks, &migration("batch", &subnets, 0, 600.0, json!({}))).await;
    wait_condition(&tasks, "batch", "Reconciling", "True", Some("Running"), 30).await;
    let first = tasks.get("batch").await.expect("get").status.expect("status").tasks[0]
        .task_arn
        .clone();
    // A deadline is not a new run.
    apply_json(
        &tasks,
        &migration("batch", &subnets, 0, 600.0, json!({"activeDeadlineSeconds": 3600})),
    )
    .await;
    wait_condition(&tasks, "batch", "Reconciling", "True", Some("Running"), 30).await;
    assert_eq!(calls_of(&ecs_calls(&ns), "RunTask"), 1);
    // What runs changed: the first run is stopped, the new one runs to the end.
    apply_json(
        &tasks,
        &migration("batch", &subnets, 0, 1.0, json!({"activeDeadlineSeconds": 3600})),
    )
    .await;
    wait_condition(&tasks, "batch", "Complete", "True", None, 60).await;
    assert_eq!(calls_of(&ecs_calls(&ns), "RunTask"), 2);
    let stops = ecs_requests(&ns, "StopTask");
    assert_eq!(stops.len(), 1, "{stops:?}");
    assert_eq!(stops[0]["task"], json!(first));
    event(&client, &ns, "batch", "Stopped", "previous run").await;
}

#[tokio::test]
async fn failed_runs_say_why_in_ecs_words() {
    let client = admin_client().await;
    let ns = namespace(&client, "task-failed").await;
    let _operator = Operator::start(&ns);
    let subnets = migration_bed(&client, &ns).await;
    let tasks: Api<EcsTask> = Api::namespaced(client.clone(), &ns);

    // An essential container exits 3.
    apply_json(&tasks, &migration("exits-3", &subnets, 3, 0.5, json!({}))).await;
    let (reason, message) = wait_condition(&tasks, "exits-3", "Failed", "True", None, 60).await;
    assert_eq!(reason, "ContainerFailed");
    assert!(message.contains("container app exited with exit code 3"), "{message}");
    wait_condition(&tasks, "exits-3", "Stalled", "True", Some("ContainerFailed"), 5).await;
    let live = serde_json::to_value(tasks.get("exits-3").await.expect("get")).expect("JSON");
    assert_eq!(argo_health(&live).0, "Degraded", "{live}");
    event(&client, &ns, "exits-3", "ContainerFailed", "exit code 3").await;

    // An image that cannot be pulled: the task never starts.
    let mut unpullable = migration("cannot-pull", &subnets, 0, 0.5, json!({}));
    unpullable["spec"]["taskDefinitionRef"] = Value::Null;
    unpullable["spec"]["taskDefinition"] = json!(register_unpullable(&ns).await);
    apply_json(&tasks, &unpullable).await;
    let (reason, message) = wait_condition(&tasks, "cannot-pull", "Failed", "True", None, 60).await;
    assert_eq!(reason, "TaskFailedToStart");
    assert!(message.contains("CannotPullContainerError"), "{message}");
    let status = tasks.get("cannot-pull").await.expect("get").status.expect("status");
    let container = &status.tasks[0].containers[0];
    assert!(
        container
            .reason
            .as_deref()
            .is_some_and(|r| r.starts_with("CannotPullContainerError")),
        "{container:?}"
    );
    assert_eq!(container.exit_code, None);

    // EC2 in a cluster without container instances: RunTask starts nothing and says why.
    let mut nowhere = migration("no-instances", &subnets, 0, 0.5, json!({}));
    nowhere["spec"]["launchType"] = json!("EC2");
    apply_json(&tasks, &nowhere).await;
    let (reason, message) = wait_condition(&tasks, "no-instances", "Failed", "True", None, 60).await;
    assert_eq!(reason, "RunTaskFailed");
    assert!(message.contains("No Container Instances were found"), "{message}");
}

/// A task definition whose image the endpoint cannot pull; its ARN.
async fn register_unpullable(ns: &str) -> String {
    use aws_sdk_ecs::types::{Compatibility, ContainerDefinition, NetworkMode};
    ecs_client()
        .register_task_definition()
        .family(format!("{ns}-unpullable"))
        .network_mode(NetworkMode::Awsvpc)
        .requires_compatibilities(Compatibility::Fargate)
        .cpu("256")
        .memory("512")
        .container_definitions(
            ContainerDefinition::builder()
                .name("app")
                .image("app:cannotpull")
                .build(),
        )
        .send()
        .await
        .expect("register")
        .task_definition()
        .and_then(|td| td.task_definition_arn())
        .expect("ARN")
        .to_string()
}

#[tokio::test]
async fn the_deadline_stops_a_task_that_runs_too_long() {
    let client = admin_client().await;
    let ns = namespace(&client, "task-deadline").await;
    let _operator = Operator::start(&ns);
    let subnets = migration_bed(&client, &ns).await;
    let tasks: Api<EcsTask> = Api::namespaced(client.clone(), &ns);

    apply_json(
        &tasks,
        &migration("slow", &subnets, 0, 600.0, json!({"activeDeadlineSeconds": 2})),
    )
    .await;
    let (reason, _) = wait_condition(&tasks, "slow", "Failed", "True", None, 60).await;
    assert_eq!(reason, "DeadlineExceeded");
    let status = tasks.get("slow").await.expect("get").status.expect("status");
    assert_eq!(status.tasks[0].stop_code.as_deref(), Some("UserInitiated"));
    assert!(
        status.tasks[0]
            .stopped_reason
            .as_deref()
            .is_some_and(|r| r.contains("activeDeadlineSeconds")),
        "{status:?}"
    );
    assert_eq!(calls_of(&ecs_calls(&ns), "StopTask"), 1);
    event(&client, &ns, "slow", "DeadlineExceeded", "").await;
}

#[tokio::test]
async fn an_operator_killed_between_run_task_and_its_status_write_starts_no_second_task() {
    let client = admin_client().await;
    let ns = namespace(&client, "task-crash").await;
    let mut operator = Operator::start(&ns);
    let subnets = migration_bed(&client, &ns).await;
    let tasks: Api<EcsTask> = Api::namespaced(client.clone(), &ns);
    let cluster = format!("{ns}-main");
    endpoint_control(
        "/_ecs_operator/task-answers",
        json!({"cluster": cluster, "answerDelaySeconds": 5, "times": 1}),
    );

    apply_json(&tasks, &migration("migrate", &subnets, 0, 1.0, json!({}))).await;
    wait_for("ECS started the task", 30, || async {
        let listed = ecs_client().list_tasks().cluster(&cluster).send().await.ok()?;
        (!listed.task_arns().is_empty()).then_some(())
    })
    .await;
    assert!(
        tasks
            .get("migrate")
            .await
            .expect("get")
            .status
            .is_none_or(|s| s.tasks.is_empty())
    );
    operator.restart();

    wait_condition(&tasks, "migrate", "Complete", "True", None, 60).await;
    let listed = ecs_client().list_tasks().cluster(&cluster).send().await.expect("list");
    let stopped = ecs_client()
        .list_tasks()
        .cluster(&cluster)
        .desired_status(aws_sdk_ecs::types::DesiredStatus::Stopped)
        .send()
        .await
        .expect("list");
    assert_eq!(
        listed.task_arns().len() + stopped.task_arns().len(),
        1,
        "one task in ECS: {listed:?} {stopped:?}"
    );
    let runs = ecs_requests(&ns, "RunTask");
    assert_eq!(runs.len(), 2, "RunTask was sent again after the restart");
    assert_eq!(
        runs[0]["clientToken"], runs[1]["clientToken"],
        "with the same clientToken"
    );
}

#[tokio::test]
async fn running_tasks_are_read_together() {
    let client = admin_client().await;
    let ns = namespace(&client, "task-batch").await;
    let _operator = Operator::start(&ns);
    let subnets = migration_bed(&client, &ns).await;
    let tasks: Api<EcsTask> = Api::namespaced(client.clone(), &ns);
    for name in ["a", "b", "c"] {
        apply_json(&tasks, &migration(name, &subnets, 0, 6.0, json!({}))).await;
    }
    for name in ["a", "b", "c"] {
        wait_condition(&tasks, name, "Complete", "True", None, 60).await;
    }
    let widest = ecs_requests(&ns, "DescribeTasks")
        .iter()
        .map(|r| r["tasks"].as_array().map_or(0, Vec::len))
        .max()
        .unwrap_or(0);
    assert_eq!(widest, 3, "one DescribeTasks read all three running tasks");
}

#[tokio::test]
async fn deleting_a_running_run_stops_its_tasks_unless_retained() {
    let client = admin_client().await;
    let ns = namespace(&client, "task-delete").await;
    let _operator = Operator::start(&ns);
    let subnets = migration_bed(&client, &ns).await;
    let tasks: Api<EcsTask> = Api::namespaced(client.clone(), &ns);
    let running = |name: &'static str| {
        let tasks = tasks.clone();
        async move {
            wait_condition(&tasks, name, "Reconciling", "True", Some("Running"), 30).await;
        }
    };
    apply_json(&tasks, &migration("stopped", &subnets, 0, 600.0, json!({}))).await;
    apply_json(
        &tasks,
        &migration("kept", &subnets, 0, 600.0, json!({"deletionPolicy": "Retain"})),
    )
    .await;
    running("stopped").await;
    running("kept").await;
    for name in ["stopped", "kept"] {
        tasks.delete(name, &Default::default()).await.expect("delete");
        gone(&tasks, name, 30).await;
    }
    assert_eq!(
        calls_of(&ecs_calls(&ns), "StopTask"),
        1,
        "only the task whose object had deletionPolicy Delete"
    );
    event(&client, &ns, "kept", "Retained", "").await;
}

#[tokio::test]
async fn a_task_ecs_has_forgotten_fails_the_run_instead_of_following_it_forever() {
    let client = admin_client().await;
    let ns = namespace(&client, "task-forgotten").await;
    let mut operator = Operator::start(&ns);
    let subnets = migration_bed(&client, &ns).await;
    let tasks: Api<EcsTask> = Api::namespaced(client.clone(), &ns);
    let cluster = format!("{ns}-main");

    apply_json(&tasks, &migration("migrate", &subnets, 0, 1.0, json!({}))).await;
    wait_for("the run in status", 30, || async {
        let status = tasks.get("migrate").await.ok()?.status?;
        (!status.tasks.is_empty()).then_some(())
    })
    .await;
    // The operator is away while the task ends, and longer than ECS keeps stopped tasks.
    operator.pause();
    wait_for("the task stopped", 30, || async {
        let stopped = ecs_client()
            .list_tasks()
            .cluster(&cluster)
            .desired_status(aws_sdk_ecs::types::DesiredStatus::Stopped)
            .send()
            .await
            .ok()?;
        (!stopped.task_arns().is_empty()).then_some(())
    })
    .await;
    endpoint_control(
        "/_ecs_operator/forget-stopped-tasks",
        json!({"cluster": cluster, "region": common::test_bed().vars["AWS_REGION"]}),
    );
    operator.resume();

    // Once ECS's eventual consistency cannot explain it (a minute after RunTask): Failed.
    let (reason, message) = wait_condition(&tasks, "migrate", "Failed", "True", None, 120).await;
    assert_eq!(reason, "TaskStopped");
    assert!(message.contains("MISSING"), "{message}");
    let described = calls_of(&ecs_calls(&ns), "DescribeTasks");
    more_calls(&ns, "DescribeClusters", 2).await;
    assert_eq!(
        calls_of(&ecs_calls(&ns), "DescribeTasks"),
        described,
        "no longer followed"
    );
    tasks.delete("migrate", &Default::default()).await.expect("delete");
    gone(&tasks, "migrate", 30).await;
}
