//! EcsTaskSchedule, ECS tasks on a schedule through EventBridge Scheduler: created with the
//! task the spec describes, `diff` predicting a change, changed with one UpdateSchedule, a new task definition revision
//! scheduled at once, nothing written at resyncs, a change made behind the operator's back
//! put back, disabled, an expression the service rejects Stalled with its words, and
//! deleted; a schedule made elsewhere NotOwned until adopted.

mod common;

use common::{
    Operator, admin_client, apply_json, calls_of, cli, ecs_calls, event, gone, more_calls, namespace, object, ready,
    test_bed, wait_condition, wait_for,
};
use ecs_operator::api::{EcsCluster, EcsTaskDefinition, EcsTaskSchedule};
use kube::api::{Api, DeleteParams};
use serde_json::{Value, json};

fn scheduler_client() -> aws_sdk_scheduler::Client {
    let config = aws_sdk_scheduler::Config::builder()
        .behavior_version(aws_sdk_scheduler::config::BehaviorVersion::latest())
        .region(aws_sdk_scheduler::config::Region::new(
            test_bed().vars["AWS_REGION"].clone(),
        ))
        .endpoint_url(test_bed().ecs_endpoint())
        .credentials_provider(aws_sdk_scheduler::config::Credentials::new(
            "testing", "testing", None, None, "tests",
        ))
        .build();
    aws_sdk_scheduler::Client::from_conf(config)
}

const ROLE: &str = "arn:aws:iam::123456789012:role/ecs-scheduler";

/// A cluster `main` and a task definition `report` (EC2-compatible), applied.
async fn report_bed(client: &kube::Client, ns: &str) -> (Api<EcsCluster>, Api<EcsTaskDefinition>) {
    let clusters: Api<EcsCluster> = Api::namespaced(client.clone(), ns);
    let tds: Api<EcsTaskDefinition> = Api::namespaced(client.clone(), ns);
    apply_json(
        &clusters,
        &object("EcsCluster", "main", json!({"clusterName": format!("{ns}-main")})),
    )
    .await;
    let td = json!({"family": format!("{ns}-report"), "containerDefinitions": [{"name": "app", "image": "report:1", "memory": 128}]});
    apply_json(&tds, &object("EcsTaskDefinition", "report", td)).await;
    (clusters, tds)
}

fn nightly(ns: &str, subnets: &[String], extra: Value) -> Value {
    let mut spec = json!({
        "scheduleName": format!("{ns}-nightly"),
        "scheduleExpression": "cron(0 3 * * ? *)",
        "scheduleExpressionTimezone": "Europe/Paris",
        "roleArn": ROLE,
        "task": {
            "clusterRef": {"name": "main"}, "taskDefinitionRef": {"name": "report"}, "launchType": "FARGATE",
            "networkConfiguration": {"awsvpcConfiguration": {"subnets": subnets}},
            "overrides": {"containerOverrides": [{"name": "app", "command": ["report", "--daily"]}]},
        },
    });
    for (key, value) in extra.as_object().into_iter().flatten() {
        spec[key] = value.clone();
    }
    object("EcsTaskSchedule", "nightly", spec)
}

#[tokio::test]
async fn a_schedule_is_created_changed_once_disabled_and_deleted() {
    let client = admin_client().await;
    let ns = namespace(&client, "schedule").await;
    let _operator = Operator::start(&ns);
    let clusters: Api<EcsCluster> = Api::namespaced(client.clone(), &ns);
    let tds: Api<EcsTaskDefinition> = Api::namespaced(client.clone(), &ns);
    let schedules: Api<EcsTaskSchedule> = Api::namespaced(client.clone(), &ns);
    let report = |image: &str| {
        object(
            "EcsTaskDefinition",
            "report",
            json!({"family": format!("{ns}-report"), "networkMode": "awsvpc", "requiresCompatibilities": ["FARGATE"],
                   "cpu": "256", "memory": "512", "containerDefinitions": [{"name": "app", "image": image}]}),
        )
    };
    apply_json(
        &clusters,
        &object("EcsCluster", "main", json!({"clusterName": format!("{ns}-main")})),
    )
    .await;
    apply_json(&tds, &report("report:1")).await;
    let subnets = common::vpc(1, 0).0;
    apply_json(&schedules, &nightly(&ns, &subnets, json!({}))).await;

    // Created, with the task the spec describes.
    let created = ready(&schedules, "nightly", 60).await;
    let status = created.status.clone().expect("status");
    let td_arn = ready(&tds, "report", 5)
        .await
        .status
        .and_then(|s| s.task_definition_arn)
        .expect("revision");
    let cluster_arn = ready(&clusters, "main", 5)
        .await
        .status
        .and_then(|s| s.cluster_arn)
        .expect("cluster");
    assert_eq!(status.state.as_deref(), Some("ENABLED"));
    assert!(
        status
            .schedule_arn
            .as_deref()
            .is_some_and(|a| a.ends_with(&format!("/default/{ns}-nightly")))
    );
    let scheduler = scheduler_client();
    let get = || async {
        scheduler
            .get_schedule()
            .name(format!("{ns}-nightly"))
            .send()
            .await
            .expect("GetSchedule")
    };
    let schedule = get().await;
    assert_eq!(schedule.schedule_expression(), Some("cron(0 3 * * ? *)"));
    assert_eq!(schedule.schedule_expression_timezone(), Some("Europe/Paris"));
    let target = schedule.target().expect("target");
    assert_eq!(target.arn(), cluster_arn);
    assert_eq!(target.role_arn(), ROLE);
    let input: Value = serde_json::from_str(target.input().expect("input")).expect("JSON");
    assert_eq!(input["containerOverrides"][0]["command"], json!(["report", "--daily"]));
    let ecs = target.ecs_parameters().expect("EcsParameters");
    assert_eq!(ecs.task_definition_arn(), td_arn);
    assert_eq!(ecs.launch_type().map(|l| l.as_str()), Some("FARGATE"));
    let vpc = ecs
        .network_configuration()
        .and_then(|n| n.awsvpc_configuration())
        .expect("awsvpc");
    assert_eq!(vpc.subnets(), subnets.as_slice());
    assert!(
        ecs.tags().iter().any(
            |t| t.get("key").map(String::as_str) == Some("ecs.operator.dev/namespace")
                && t.get("value").map(String::as_str) == Some(&*ns)
        ),
        "the tasks carry the ownership tags, as {{key, value}} maps: {:?}",
        ecs.tags()
    );
    assert_eq!(calls_of(&ecs_calls(&ns), "CreateSchedule"), 1);
    event(&client, &ns, "nightly", "Created", "").await;

    // At resyncs: one GetSchedule each, no write.
    more_calls(&ns, "GetSchedule", 3).await;
    assert_eq!(
        calls_of(&ecs_calls(&ns), "UpdateSchedule"),
        0,
        "nothing written at resyncs"
    );

    // `diff` predicts the change, and writes nothing.
    let changed = nightly(&ns, &subnets, json!({"scheduleExpression": "rate(6 hours)"}));
    let differ = format!("{ns}-diff");
    let diff = |manifest: &Value| cli(&["diff", "-f", "-", "-n", &ns], &differ, Some(&manifest.to_string()));
    let (code, out, err) = diff(&nightly(&ns, &subnets, json!({})));
    assert_eq!((code, out.as_str()), (0, ""), "in sync: {err}");
    let (code, out, err) = diff(&changed);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        out.contains(&format!(
            "EcsTaskSchedule {ns}/nightly: UpdateSchedule default/{ns}-nightly (changed: scheduleExpression)"
        )),
        "{out}"
    );
    assert!(
        out.contains(r#"scheduleExpression: "cron(0 3 * * ? *)" -> "rate(6 hours)""#),
        "{out}"
    );
    let diff_calls = ecs_calls(&differ);
    assert_eq!(
        diff_calls.keys().collect::<Vec<_>>(),
        ["GetSchedule"],
        "diff only reads: {diff_calls:?}"
    );

    // A change of the expression: one UpdateSchedule.
    apply_json(&schedules, &changed).await;
    wait_for("the new expression in EventBridge Scheduler", 30, || async {
        (get().await.schedule_expression() == Some("rate(6 hours)")).then_some(())
    })
    .await;
    ready(&schedules, "nightly", 30).await;
    more_calls(&ns, "GetSchedule", 2).await;
    assert_eq!(
        calls_of(&ecs_calls(&ns), "UpdateSchedule"),
        1,
        "one UpdateSchedule for one change"
    );
    event(&client, &ns, "nightly", "Updated", "scheduleExpression").await;

    // A new revision of the referenced task definition is scheduled at once.
    apply_json(&tds, &report("report:2")).await;
    wait_for("revision 2 scheduled", 30, || async {
        let schedule = get().await;
        let arn = schedule.target()?.ecs_parameters()?.task_definition_arn().to_string();
        arn.ends_with(":2").then_some(())
    })
    .await;
    assert_eq!(calls_of(&ecs_calls(&ns), "UpdateSchedule"), 2);
    event(
        &client,
        &ns,
        "nightly",
        "Updated",
        "target.ecsParameters.taskDefinitionArn",
    )
    .await;

    // Changed behind the operator's back: put back at the next resync.
    let current = get().await;
    scheduler
        .update_schedule()
        .name(format!("{ns}-nightly"))
        .schedule_expression("rate(1 day)")
        .flexible_time_window(current.flexible_time_window().expect("window").clone())
        .target(current.target().expect("target").clone())
        .send()
        .await
        .expect("UpdateSchedule by hand");
    wait_for("the expression put back", 30, || async {
        (get().await.schedule_expression() == Some("rate(6 hours)")).then_some(())
    })
    .await;
    event(&client, &ns, "nightly", "DriftCorrected", "scheduleExpression").await;
    assert_eq!(calls_of(&ecs_calls(&ns), "UpdateSchedule"), 3);

    // Disabled: the schedule stays, runs nothing.
    apply_json(
        &schedules,
        &nightly(
            &ns,
            &subnets,
            json!({"scheduleExpression": "rate(6 hours)", "state": "DISABLED"}),
        ),
    )
    .await;
    wait_condition(&schedules, "nightly", "Ready", "True", None, 30).await;
    let state = schedules
        .get("nightly")
        .await
        .expect("get")
        .status
        .and_then(|s| s.state);
    assert_eq!(state.as_deref(), Some("DISABLED"));
    assert_eq!(get().await.state().map(|s| s.as_str()), Some("DISABLED"));
    assert_eq!(calls_of(&ecs_calls(&ns), "UpdateSchedule"), 4);

    // Deleted with the object.
    schedules
        .delete("nightly", &DeleteParams::default())
        .await
        .expect("delete");
    gone(&schedules, "nightly", 30).await;
    let after = scheduler.get_schedule().name(format!("{ns}-nightly")).send().await;
    assert!(
        after.is_err_and(|e| e
            .as_service_error()
            .is_some_and(|e| e.is_resource_not_found_exception())),
        "the schedule is gone"
    );
    assert_eq!(calls_of(&ecs_calls(&ns), "DeleteSchedule"), 1);
}

#[tokio::test]
async fn an_expression_the_service_rejects_is_stalled_with_its_words() {
    let client = admin_client().await;
    let ns = namespace(&client, "schedule-bad").await;
    let _operator = Operator::start(&ns);
    report_bed(&client, &ns).await;
    let schedules: Api<EcsTaskSchedule> = Api::namespaced(client.clone(), &ns);
    // Admitted (it has the rate(...) shape), refused by EventBridge Scheduler.
    apply_json(
        &schedules,
        &nightly(&ns, &[], json!({"scheduleExpression": "rate(5 fortnights)"})),
    )
    .await;
    let (reason, message) = wait_condition(&schedules, "nightly", "Stalled", "True", None, 60).await;
    assert_eq!(reason, "EcsRejected");
    assert!(message.contains("Invalid Schedule Expression"), "{message}");
    assert_eq!(
        calls_of(&ecs_calls(&ns), "CreateSchedule"),
        1,
        "not retried for the same spec"
    );
}

#[tokio::test]
async fn a_schedule_made_elsewhere_is_not_touched_until_adopted() {
    use aws_sdk_scheduler::types::{EcsParameters, FlexibleTimeWindow, FlexibleTimeWindowMode, Target};
    let client = admin_client().await;
    let ns = namespace(&client, "schedule-adopt").await;
    let _operator = Operator::start(&ns);
    let (clusters, tds) = report_bed(&client, &ns).await;
    let schedules: Api<EcsTaskSchedule> = Api::namespaced(client.clone(), &ns);
    let cluster_arn = ready(&clusters, "main", 30)
        .await
        .status
        .and_then(|s| s.cluster_arn)
        .expect("cluster");
    let td_arn = ready(&tds, "report", 30)
        .await
        .status
        .and_then(|s| s.task_definition_arn)
        .expect("revision");
    // Someone made a schedule of that name by hand.
    scheduler_client()
        .create_schedule()
        .name(format!("{ns}-nightly"))
        .schedule_expression("rate(1 day)")
        .flexible_time_window(
            FlexibleTimeWindow::builder()
                .mode(FlexibleTimeWindowMode::Off)
                .build()
                .expect("window"),
        )
        .target(
            Target::builder()
                .arn(cluster_arn)
                .role_arn(ROLE)
                .ecs_parameters(
                    EcsParameters::builder()
                        .task_definition_arn(td_arn)
                        .build()
                        .expect("ecs"),
                )
                .build()
                .expect("target"),
        )
        .send()
        .await
        .expect("CreateSchedule by hand");

    apply_json(&schedules, &nightly(&ns, &[], json!({}))).await;
    let (reason, message) = wait_condition(&schedules, "nightly", "Stalled", "True", None, 30).await;
    assert_eq!(reason, "NotOwned");
    assert!(message.contains("spec.adopt"), "{message}");
    let written = ["CreateSchedule", "UpdateSchedule", "DeleteSchedule"].map(|op| calls_of(&ecs_calls(&ns), op));
    assert_eq!(written, [0, 0, 0], "not touched");

    apply_json(&schedules, &nightly(&ns, &[], json!({"adopt": true}))).await;
    wait_condition(&schedules, "nightly", "Ready", "True", None, 30).await;
    event(&client, &ns, "nightly", "Adopted", "").await;
    let adopted = scheduler_client()
        .get_schedule()
        .name(format!("{ns}-nightly"))
        .send()
        .await
        .expect("get");
    assert_eq!(adopted.schedule_expression(), Some("cron(0 3 * * ? *)"));
    assert_eq!(calls_of(&ecs_calls(&ns), "UpdateSchedule"), 1);
}
