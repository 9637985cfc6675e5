//! EcsTaskSchedule: the EventBridge Scheduler schedule a spec asks for, and whether the one
//! GetSchedule reported needs a CreateSchedule, an UpdateSchedule or nothing.
//!
//! - UpdateSchedule replaces the whole schedule ("any values you don't specify will be reset
//!   to defaults", UpdateSchedule), so an update sends every member, and is sent only when
//!   a member differs.
//! - Members are compared as EventBridge Scheduler reports them: its defaults (time zone
//!   UTC, flexible window OFF, state ENABLED, retry policy 185 attempts over 86400 s, task
//!   count 1) are not differences, nor is the order of subnets, security groups or tags.
//! - A start date already past is left out: it changes nothing about when the schedule
//!   runs, and EventBridge Scheduler refuses a StartDate "earlier than 5 minutes ago".
//! - Schedules carry no tags of their own; the tasks a schedule starts do (EcsParameters
//!   `tags`, each tag a `{"key": ..., "value": ...}` map, as CloudFormation, the CDK and
//!   Terraform send them). The operator's ownership tags go there, which is how a schedule it created is
//!   told from one it did not (see [`task_tags`]).

use std::collections::{BTreeMap, HashMap};

use aws_sdk_scheduler::operation::get_schedule::GetScheduleOutput;
use aws_sdk_scheduler::primitives::DateTime;
use aws_sdk_scheduler::types::{
    AssignPublicIp, AwsVpcConfiguration, CapacityProviderStrategyItem, EcsParameters, FlexibleTimeWindow,
    FlexibleTimeWindowMode, LaunchType, NetworkConfiguration, PlacementConstraint, PlacementConstraintType,
    PlacementStrategy, PlacementStrategyType, PropagateTags, RetryPolicy, ScheduleState, Target,
};
use serde_json::{Value, json};

use super::{Change, Write};
use crate::api::ecs_types::RunTaskInput;
use crate::api::schedule::{EcsTaskScheduleSpec, FlexibleTimeWindowMode as SpecWindowMode};

/// EventBridge Scheduler's defaults for a target's retry policy (RetryPolicy).
const DEFAULT_EVENT_AGE_SECONDS: i32 = 86_400;
const DEFAULT_RETRY_ATTEMPTS: i32 = 185;

/// The schedule as CreateSchedule and UpdateSchedule take it (name and group aside).
#[derive(Debug, Clone, PartialEq)]
pub struct Wanted {
    pub schedule_expression: String,
    pub schedule_expression_timezone: Option<String>,
    pub flexible_time_window: FlexibleTimeWindow,
    pub start_date: Option<DateTime>,
    pub end_date: Option<DateTime>,
    pub state: ScheduleState,
    pub description: Option<String>,
    pub target: Target,
}

/// The one thing to do about a schedule.
#[derive(Debug, Clone, PartialEq)]
pub enum Plan {
    /// No such schedule: CreateSchedule.
    Create,
    /// A schedule this object owns differs in these members: UpdateSchedule.
    Update(Vec<Change>),
    /// It is as the spec asks.
    InSync,
}

/// What `spec` asks for at `now`, its cluster and task definition resolved to ARNs, the
/// tasks tagged with `ownership` (the operator's tags for the object).
pub fn wanted(
    spec: &EcsTaskScheduleSpec,
    cluster_arn: &str,
    task_definition_arn: &str,
    ownership: &BTreeMap<String, String>,
    now: DateTime,
) -> Result<Wanted, String> {
    let run = &spec.task.run;
    let flexible_time_window = match &spec.flexible_time_window {
        Some(window) if window.mode == SpecWindowMode::Flexible => FlexibleTimeWindow::builder()
            .mode(FlexibleTimeWindowMode::Flexible)
            .set_maximum_window_in_minutes(window.maximum_window_in_minutes)
            .build(),
        _ => FlexibleTimeWindow::builder().mode(FlexibleTimeWindowMode::Off).build(),
    }
    .map_err(|e| e.to_string())?;
    let retry = spec.retry_policy.clone().unwrap_or_default();
    let input = match &run.overrides {
        Some(overrides) => Some(serde_json::to_string(overrides).map_err(|e| e.to_string())?),
        None => None,
    };
    let target = Target::builder()
        .arn(cluster_arn)
        .role_arn(&spec.role_arn)
        .set_input(input)
        .retry_policy(
            RetryPolicy::builder()
                .maximum_event_age_in_seconds(retry.maximum_event_age_in_seconds.unwrap_or(DEFAULT_EVENT_AGE_SECONDS))
                .maximum_retry_attempts(retry.maximum_retry_attempts.unwrap_or(DEFAULT_RETRY_ATTEMPTS))
                .build(),
        )
        .ecs_parameters(ecs_parameters(run, task_definition_arn, ownership)?)
        .build()
        .map_err(|e| e.to_string())?;
    Ok(Wanted {
        schedule_expression: spec.schedule_expression.clone(),
        schedule_expression_timezone: spec.schedule_expression_timezone.clone(),
        flexible_time_window,
        start_date: date(spec.start_date.as_deref())?.filter(|d| d.secs() > now.secs()),
        end_date: date(spec.end_date.as_deref())?,
        state: ScheduleState::from(spec.state.as_str()),
        description: spec.description.clone(),
        target,
    })
}

/// RunTask's members as EventBridge Scheduler's EcsParameters.
fn ecs_parameters(
    run: &RunTaskInput,
    task_definition_arn: &str,
    ownership: &BTreeMap<String, String>,
) -> Result<EcsParameters, String> {
    let mut tags: BTreeMap<String, String> = run
        .tags
        .iter()
        .flatten()
        .map(|t| (t.key.clone().unwrap_or_default(), t.value.clone().unwrap_or_default()))
        .collect();
    tags.extend(ownership.clone());
    let network = match run
        .network_configuration
        .as_ref()
        .and_then(|n| n.awsvpc_configuration.as_ref())
    {
        Some(vpc) => Some(
            NetworkConfiguration::builder()
                .awsvpc_configuration(
                    AwsVpcConfiguration::builder()
                        .set_subnets(Some(vpc.subnets.clone()))
                        .set_security_groups(vpc.security_groups.clone())
                        .set_assign_public_ip(
                            vpc.assign_public_ip
                                .as_ref()
                                .map(|a| AssignPublicIp::from(wire(a).as_str())),
                        )
                        .build()
                        .map_err(|e| e.to_string())?,
                )
                .build(),
        ),
        None => None,
    };
    let strategy = match &run.capacity_provider_strategy {
        Some(items) => Some(
            items
                .iter()
                .map(|i| {
                    CapacityProviderStrategyItem::builder()
                        .capacity_provider(&i.capacity_provider)
                        .set_weight(i.weight)
                        .set_base(i.base)
                        .build()
                        .map_err(|e| e.to_string())
                })
                .collect::<Result<Vec<_>, _>>()?,
        ),
        None => None,
    };
    let constraints = run.placement_constraints.as_ref().map(|items| {
        items
            .iter()
            .map(|c| {
                PlacementConstraint::builder()
                    .set_type(
                        c.r#type
                            .as_ref()
                            .map(|t| PlacementConstraintType::from(wire(t).as_str())),
                    )
                    .set_expression(c.expression.clone())
                    .build()
            })
            .collect()
    });
    let placement = run.placement_strategy.as_ref().map(|items| {
        items
            .iter()
            .map(|s| {
                PlacementStrategy::builder()
                    .set_type(s.r#type.as_ref().map(|t| PlacementStrategyType::from(wire(t).as_str())))
                    .set_field(s.field.clone())
                    .build()
            })
            .collect()
    });
    EcsParameters::builder()
        .task_definition_arn(task_definition_arn)
        .task_count(run.count.unwrap_or(1))
        .set_launch_type(run.launch_type.as_ref().map(|l| LaunchType::from(wire(l).as_str())))
        .set_capacity_provider_strategy(strategy)
        .set_network_configuration(network)
        .set_placement_constraints(constraints)
        .set_placement_strategy(placement)
        .set_platform_version(run.platform_version.clone())
        .set_group(run.group.clone())
        .set_propagate_tags(
            run.propagate_tags
                .as_ref()
                .map(|p| PropagateTags::from(wire(p).as_str())),
        )
        .set_reference_id(run.reference_id.clone())
        .set_enable_ecs_managed_tags(run.enable_ecs_managed_tags)
        .set_enable_execute_command(run.enable_execute_command)
        .set_tags(Some(tags.into_iter().map(|(k, v)| tag(k, v)).collect()))
        .build()
        .map_err(|e| e.to_string())
}

/// One task tag as EcsParameters' TagList holds it.
fn tag(key: String, value: String) -> HashMap<String, String> {
    HashMap::from([("key".to_string(), key), ("value".to_string(), value)])
}

/// The wire name of a generated ECS enum (its serde name).
fn wire<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// An RFC 3339 date as the SDK's DateTime.
fn date(text: Option<&str>) -> Result<Option<DateTime>, String> {
    text.map(|t| {
        DateTime::from_str(t, aws_sdk_scheduler::primitives::DateTimeFormat::DateTimeWithOffset)
            .map_err(|e| format!("{t} is not an RFC 3339 date: {e}"))
    })
    .transpose()
}

/// The schedule GetSchedule reported at `now`, in the shape of what the spec asks for.
pub fn observed(out: &GetScheduleOutput, now: DateTime) -> Option<Wanted> {
    Some(Wanted {
        schedule_expression: out.schedule_expression()?.to_string(),
        schedule_expression_timezone: out.schedule_expression_timezone().map(str::to_owned),
        flexible_time_window: out.flexible_time_window()?.clone(),
        start_date: out.start_date().cloned().filter(|d| d.secs() > now.secs()),
        end_date: out.end_date().cloned(),
        state: out.state().cloned().unwrap_or(ScheduleState::Enabled),
        description: out.description().map(str::to_owned),
        target: out.target()?.clone(),
    })
}

/// The tags of the tasks a schedule starts: where the operator's ownership tags live.
pub fn task_tags(target: &Target) -> BTreeMap<String, String> {
    target
        .ecs_parameters()
        .map(|p| p.tags())
        .unwrap_or_default()
        .iter()
        .flat_map(|m| match m.get("key") {
            Some(key) => vec![(key.clone(), m.get("value").cloned().unwrap_or_default())],
            // NB: a schedule made elsewhere may hold `{"<key>": "<value>"}` maps.
            None => m.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        })
        .collect()
}

/// What to do, given what GetSchedule reported (None: no such schedule). Whether the
/// object may touch a reported schedule is the executor's question (its task tags).
pub fn plan(wanted: &Wanted, reported: Option<&Wanted>) -> Plan {
    let Some(reported) = reported else {
        return Plan::Create;
    };
    let changes = changes(reported, wanted);
    if changes.is_empty() {
        Plan::InSync
    } else {
        Plan::Update(changes)
    }
}

/// The members where `reported` differs from `wanted`, compared as EventBridge Scheduler
/// reports them.
pub fn changes(reported: &Wanted, wanted: &Wanted) -> Vec<Change> {
    let (from, to) = (members(reported), members(wanted));
    to.iter()
        .filter(|(field, value)| from.get(*field) != Some(*value))
        .map(|(field, value)| Change {
            field: field.to_string(),
            from: from.get(field).cloned().unwrap_or(Value::Null),
            to: value.clone(),
        })
        .collect()
}

/// The writes `plan` makes, for `diff`.
pub fn writes(plan: &Plan, name: &str) -> Vec<Write> {
    match plan {
        Plan::Create => vec![Write::new("CreateSchedule", name, "no such schedule")],
        Plan::Update(changes) => {
            let fields: Vec<&str> = changes.iter().map(|c| c.field.as_str()).collect();
            vec![
                Write::new("UpdateSchedule", name, format!("changed: {}", fields.join(", "))).changing(changes.clone()),
            ]
        }
        Plan::InSync => vec![],
    }
}

/// Each member of a schedule, defaults filled in and set-like lists sorted.
fn members(w: &Wanted) -> BTreeMap<&'static str, Value> {
    let window = &w.flexible_time_window;
    let flexible = window.mode() == &FlexibleTimeWindowMode::Flexible;
    let target = &w.target;
    let retry = target.retry_policy();
    let ecs = target.ecs_parameters();
    let mut members = BTreeMap::from([
        ("scheduleExpression", json!(w.schedule_expression)),
        (
            "scheduleExpressionTimezone",
            json!(w.schedule_expression_timezone.as_deref().unwrap_or("UTC")),
        ),
        (
            "flexibleTimeWindow",
            json!({"mode": window.mode().as_str(),
                   "maximumWindowInMinutes": if flexible { window.maximum_window_in_minutes() } else { None }}),
        ),
        ("startDate", json!(w.start_date.map(|d| d.secs()))),
        ("endDate", json!(w.end_date.map(|d| d.secs()))),
        ("state", json!(w.state.as_str())),
        ("description", json!(w.description.as_deref().unwrap_or_default())),
        ("target.arn", json!(target.arn())),
        ("target.roleArn", json!(target.role_arn())),
        (
            "target.input",
            target
                .input()
                .map(|i| serde_json::from_str(i).unwrap_or_else(|_| json!(i)))
                .unwrap_or(Value::Null),
        ),
        (
            "target.retryPolicy",
            json!({
                "maximumEventAgeInSeconds": retry.and_then(|r| r.maximum_event_age_in_seconds()).unwrap_or(DEFAULT_EVENT_AGE_SECONDS),
                "maximumRetryAttempts": retry.and_then(|r| r.maximum_retry_attempts()).unwrap_or(DEFAULT_RETRY_ATTEMPTS),
            }),
        ),
    ]);
    let Some(ecs) = ecs else {
        return members;
    };
    let vpc = ecs.network_configuration().and_then(|n| n.awsvpc_configuration());
    let sorted = |list: &[String]| {
        let mut list = list.to_vec();
        list.sort();
        list
    };
    let mut strategy: Vec<Value> = ecs
        .capacity_provider_strategy()
        .iter()
        .map(|i| json!({"capacityProvider": i.capacity_provider(), "weight": i.weight(), "base": i.base()}))
        .collect();
    strategy.sort_by_key(|v| v["capacityProvider"].as_str().unwrap_or_default().to_string());
    members.extend([
        (
            "target.ecsParameters.taskDefinitionArn",
            json!(ecs.task_definition_arn()),
        ),
        ("target.ecsParameters.taskCount", json!(ecs.task_count().unwrap_or(1))),
        (
            "target.ecsParameters.launchType",
            json!(ecs.launch_type().map(|l| l.as_str())),
        ),
        ("target.ecsParameters.capacityProviderStrategy", json!(strategy)),
        (
            "target.ecsParameters.networkConfiguration",
            json!(vpc.map(|v| json!({
                "subnets": sorted(v.subnets()),
                "securityGroups": sorted(v.security_groups()),
                "assignPublicIp": v.assign_public_ip().map_or("DISABLED", |a| a.as_str()),
            }))),
        ),
        (
            "target.ecsParameters.placementConstraints",
            json!(
                ecs.placement_constraints()
                    .iter()
                    .map(|c| json!({"type": c.r#type().map(|t| t.as_str()), "expression": c.expression()}))
                    .collect::<Vec<_>>()
            ),
        ),
        (
            "target.ecsParameters.placementStrategy",
            json!(
                ecs.placement_strategy()
                    .iter()
                    .map(|s| json!({"type": s.r#type().map(|t| t.as_str()), "field": s.field()}))
                    .collect::<Vec<_>>()
            ),
        ),
        ("target.ecsParameters.platformVersion", json!(ecs.platform_version())),
        ("target.ecsParameters.group", json!(ecs.group())),
        (
            "target.ecsParameters.propagateTags",
            json!(ecs.propagate_tags().map(|p| p.as_str())),
        ),
        ("target.ecsParameters.referenceId", json!(ecs.reference_id())),
        (
            "target.ecsParameters.enableECSManagedTags",
            json!(ecs.enable_ecs_managed_tags().unwrap_or(false)),
        ),
        (
            "target.ecsParameters.enableExecuteCommand",
            json!(ecs.enable_execute_command().unwrap_or(false)),
        ),
        ("target.ecsParameters.tags", json!(task_tags(target))),
    ]);
    members
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ecs::ownership;

    fn spec(expression: &str) -> EcsTaskScheduleSpec {
        serde_json::from_value(json!({
            "scheduleExpression": expression,
            "roleArn": "arn:aws:iam::123456789012:role/ecs-scheduler",
            "task": {"launchType": "FARGATE", "taskDefinitionRef": {"name": "report"},
                     "networkConfiguration": {"awsvpcConfiguration": {"subnets": ["subnet-a", "subnet-b"]}},
                     "overrides": {"containerOverrides": [{"name": "app", "command": ["report"]}]}},
        }))
        .expect("spec")
    }

    fn ours() -> BTreeMap<String, String> {
        BTreeMap::from([(ownership::UID.to_string(), "u-1".to_string())])
    }

    const CLUSTER: &str = "arn:aws:ecs:us-east-1:123456789012:cluster/main";

    fn now() -> DateTime {
        DateTime::from_secs(1_796_000_000)
    }
    const REVISION: &str = "arn:aws:ecs:us-east-1:123456789012:task-definition/report:3";

    /// What GetSchedule answers for a schedule created from `wanted`: EventBridge
    /// Scheduler's defaults filled in, subnets in another order, the input re-serialised.
    fn as_reported(wanted: &Wanted) -> Wanted {
        let mut reported = wanted.clone();
        reported.schedule_expression_timezone = Some("UTC".into());
        let ecs = wanted.target.ecs_parameters().expect("ecs").clone();
        let vpc = ecs
            .network_configuration()
            .and_then(|n| n.awsvpc_configuration())
            .expect("vpc");
        let mut subnets = vpc.subnets().to_vec();
        subnets.reverse();
        let reversed = AwsVpcConfiguration::builder()
            .set_subnets(Some(subnets))
            .assign_public_ip(AssignPublicIp::Disabled)
            .build()
            .expect("vpc");
        let ecs = EcsParameters::builder()
            .task_definition_arn(ecs.task_definition_arn())
            .task_count(1)
            .set_launch_type(ecs.launch_type().cloned())
            .network_configuration(NetworkConfiguration::builder().awsvpc_configuration(reversed).build())
            .enable_ecs_managed_tags(false)
            .set_tags(Some(ecs.tags().to_vec()))
            .build()
            .expect("ecs");
        let input: Value = serde_json::from_str(wanted.target.input().expect("input")).expect("JSON");
        reported.target = Target::builder()
            .arn(wanted.target.arn())
            .role_arn(wanted.target.role_arn())
            .input(serde_json::to_string_pretty(&input).expect("JSON"))
            .retry_policy(
                RetryPolicy::builder()
                    .maximum_event_age_in_seconds(86_400)
                    .maximum_retry_attempts(185)
                    .build(),
            )
            .ecs_parameters(ecs)
            .build()
            .expect("target");
        reported
    }

    #[test]
    fn a_schedule_as_the_service_reports_it_is_in_sync() {
        let wanted = wanted(&spec("rate(1 hour)"), CLUSTER, REVISION, &ours(), now()).expect("wanted");
        assert_eq!(plan(&wanted, None), Plan::Create);
        assert_eq!(plan(&wanted, Some(&as_reported(&wanted))), Plan::InSync);
        assert_eq!(
            task_tags(&as_reported(&wanted).target)
                .get(ownership::UID)
                .map(String::as_str),
            Some("u-1")
        );
    }

    #[test]
    fn one_changed_member_is_one_update_naming_it() {
        let before = wanted(&spec("rate(1 hour)"), CLUSTER, REVISION, &ours(), now()).expect("wanted");
        let after = wanted(&spec("rate(6 hours)"), CLUSTER, REVISION, &ours(), now()).expect("wanted");
        let plan = plan(&after, Some(&as_reported(&before)));
        let Plan::Update(changes) = &plan else {
            panic!("{plan:?}")
        };
        assert_eq!(changes.len(), 1, "{changes:?}");
        assert_eq!(changes[0].field, "scheduleExpression");
        assert_eq!(
            (changes[0].from.clone(), changes[0].to.clone()),
            (json!("rate(1 hour)"), json!("rate(6 hours)"))
        );
        let writes = writes(&plan, "default/nightly");
        assert_eq!(writes.len(), 1);
        assert_eq!(
            (writes[0].operation, writes[0].why.as_str()),
            ("UpdateSchedule", "changed: scheduleExpression")
        );
    }

    #[test]
    fn a_new_revision_changes_only_the_task_definition() {
        let before = wanted(&spec("rate(1 hour)"), CLUSTER, REVISION, &ours(), now()).expect("wanted");
        let next = REVISION.replace(":3", ":4");
        let after = wanted(&spec("rate(1 hour)"), CLUSTER, &next, &ours(), now()).expect("wanted");
        let Plan::Update(changes) = plan(&after, Some(&as_reported(&before))) else {
            panic!()
        };
        let fields: Vec<&str> = changes.iter().map(|c| c.field.as_str()).collect();
        assert_eq!(fields, ["target.ecsParameters.taskDefinitionArn"]);
    }

    #[test]
    fn a_start_date_already_past_is_left_out_and_is_no_difference() {
        let mut past = spec("rate(1 hour)");
        past.start_date = Some("2026-01-01T00:00:00Z".into());
        let asked = wanted(&past, CLUSTER, REVISION, &ours(), now()).expect("wanted");
        assert_eq!(
            asked.start_date, None,
            "EventBridge Scheduler refuses a StartDate in the past"
        );
        let mut reported = as_reported(&asked);
        reported.start_date = None;
        assert_eq!(plan(&asked, Some(&reported)), Plan::InSync);
        let mut future = spec("rate(1 hour)");
        future.start_date = Some("2030-01-01T00:00:00Z".into());
        let asked = wanted(&future, CLUSTER, REVISION, &ours(), now()).expect("wanted");
        assert_eq!(asked.start_date.map(|d| d.secs()), Some(1_893_456_000));
    }

    #[test]
    fn task_tags_are_key_value_maps_and_raw_maps_are_read_too() {
        let wanted = wanted(&spec("rate(1 hour)"), CLUSTER, REVISION, &ours(), now()).expect("wanted");
        let sent = wanted.target.ecs_parameters().expect("ecs").tags().to_vec();
        assert_eq!(sent, vec![tag(ownership::UID.into(), "u-1".into())]);
        assert_eq!(sent[0].get("key").map(String::as_str), Some(ownership::UID));
        let raw = Target::builder()
            .arn(CLUSTER)
            .role_arn("arn:aws:iam::123456789012:role/r")
            .ecs_parameters(
                EcsParameters::builder()
                    .task_definition_arn(REVISION)
                    .tags(HashMap::from([("team".to_string(), "data".to_string())]))
                    .build()
                    .expect("ecs"),
            )
            .build()
            .expect("target");
        assert_eq!(
            task_tags(&raw),
            BTreeMap::from([("team".to_string(), "data".to_string())])
        );
    }
}
