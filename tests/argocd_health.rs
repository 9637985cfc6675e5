//! config/argocd/health.lua, run by a real Lua interpreter (Debian's lua5.4, as Argo CD's
//! gopher-lua runs it) against the statuses the operator writes.

use std::process::Command;

use serde_json::{Value, json};

/// A Lua table literal for a JSON value (what Argo CD hands the script as `obj`).
fn lua(value: &Value) -> String {
    match value {
        Value::Null => "nil".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => format!("{s:?}"),
        Value::Array(items) => format!("{{{}}}", items.iter().map(lua).collect::<Vec<_>>().join(", ")),
        Value::Object(map) => {
            let fields: Vec<String> = map.iter().map(|(k, v)| format!("[{k:?}] = {}", lua(v))).collect();
            format!("{{{}}}", fields.join(", "))
        }
    }
}

/// The health the script reports for an object: (status, message).
fn health(obj: &Value) -> (String, String) {
    let script = format!(
        "obj = {}\nlocal hs = dofile({:?})\nio.write(hs.status, '\\n', hs.message or '')",
        lua(obj),
        concat!(env!("CARGO_MANIFEST_DIR"), "/config/argocd/health.lua")
    );
    let out = Command::new("lua5.4")
        .args(["-e", &script])
        .output()
        .expect("lua5.4 (installed by make test)");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (status, message) = text.split_once('\n').unwrap_or((&text, ""));
    (status.to_string(), message.to_string())
}

fn service(generation: i64, observed: i64, conditions: Value) -> Value {
    json!({"apiVersion": "ecs.operator.dev/v1alpha1", "kind": "EcsService",
           "metadata": {"name": "web", "generation": generation},
           "status": {"observedGeneration": observed, "conditions": conditions}})
}

fn condition(type_: &str, status: &str, reason: &str, message: &str) -> Value {
    json!({"type": type_, "status": status, "reason": reason, "message": message})
}

#[test]
fn ready_for_the_current_generation_is_healthy() {
    let obj = service(
        3,
        3,
        json!([condition("Ready", "True", "Steady", "service web is steady")]),
    );
    assert_eq!(health(&obj), ("Healthy".into(), "service web is steady".into()));
}

#[test]
fn stalled_is_degraded_with_ecs_message() {
    let message = "the deployment of web:2 failed: tasks failed to start";
    let obj = service(
        3,
        3,
        json!([
            condition("Ready", "False", "RolloutFailed", message),
            condition("Stalled", "True", "RolloutFailed", message)
        ]),
    );
    assert_eq!(health(&obj), ("Degraded".into(), message.into()));
}

#[test]
fn rolling_stale_deleting_or_new_objects_are_progressing() {
    let rolling = service(
        3,
        3,
        json!([
            condition("Ready", "False", "RollingOut", "1 of 2 tasks running"),
            condition("Reconciling", "True", "RollingOut", "1 of 2 tasks running")
        ]),
    );
    assert_eq!(health(&rolling).0, "Progressing");
    let stale = service(
        4,
        3,
        json!([condition("Ready", "True", "Steady", "service web is steady")]),
    );
    assert_eq!(
        health(&stale).0,
        "Progressing",
        "Ready for an older generation is not Healthy yet"
    );
    let mut deleting = service(3, 3, json!([condition("Ready", "True", "Steady", "steady")]));
    deleting["metadata"]["deletionTimestamp"] = json!("2026-11-22T00:00:00Z");
    assert_eq!(health(&deleting), ("Progressing".into(), "Deleting".into()));
    let new = json!({"apiVersion": "ecs.operator.dev/v1alpha1", "kind": "EcsCluster", "metadata": {"name": "main", "generation": 1}});
    assert_eq!(health(&new).0, "Progressing");
}
