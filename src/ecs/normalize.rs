//! Normalisation of task definition content: the defaults ECS fills in on register made
//! explicit, and what ECS treats as absent removed, so that a spec and the revision ECS
//! registered from it compare equal. Comparing raw JSON instead registers a new revision on
//! every resync, the most common complaint against other ECS tools.

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::api::ecs_types::RegisterTaskDefinitionInput;

/// The registered content of a task definition (tags excluded: they change in place),
/// normalised. `normalise(normalise(x)) == normalise(x)`.
pub fn task_definition_content(input: &RegisterTaskDefinitionInput) -> Value {
    let mut value = serde_json::to_value(input).unwrap_or(Value::Null);
    if let Value::Object(map) = &mut value {
        map.remove("tags");
    }
    normalise(value)
}

/// Normalises task definition JSON (RegisterTaskDefinition's input shape).
pub fn normalise(mut value: Value) -> Value {
    if let Value::Object(task) = &mut value {
        let network_mode = task.get("networkMode").and_then(Value::as_str).map(str::to_owned);
        for (key, unit) in [("cpu", Unit::Cpu), ("memory", Unit::Memory)] {
            if let Some(Value::String(s)) = task.get_mut(key) {
                *s = task_size(s, unit);
            }
        }
        if let Some(Value::Array(containers)) = task.get_mut("containerDefinitions") {
            for container in containers.iter_mut().filter_map(Value::as_object_mut) {
                container_defaults(container, network_mode.as_deref());
            }
        }
    }
    drop_empty(value).unwrap_or(Value::Object(Map::new()))
}

/// A short, stable digest of normalised content, recorded as a tag on each revision.
pub fn content_hash(content: &Value) -> String {
    let mut canonical = String::new();
    write_canonical(content, &mut canonical);
    let digest = Sha256::digest(canonical.as_bytes());
    digest.iter().take(12).map(|b| format!("{b:02x}")).collect()
}

/// JSON with object keys sorted: a dependency turns on serde_json's preserve_order, so
/// `Value::to_string` alone would depend on the order keys were inserted.
fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::from(key.as_str()).to_string());
                out.push(':');
                write_canonical(&map[key], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

#[derive(Clone, Copy)]
enum Unit {
    Cpu,
    Memory,
}

/// ECS accepts "1 vCPU" / "2 GB" and stores CPU units / MiB ("1024" / "2048").
fn task_size(raw: &str, unit: Unit) -> String {
    let lower = raw.trim().to_ascii_lowercase();
    let (number, suffix) = match unit {
        Unit::Cpu => (lower.strip_suffix("vcpu"), 1024.0),
        Unit::Memory => (lower.strip_suffix("gb"), 1024.0),
    };
    match number.map(str::trim).and_then(|n| n.parse::<f64>().ok()) {
        Some(n) => format!("{}", (n * suffix).round() as i64),
        None => raw.trim().to_string(),
    }
}

/// Normalised content as ECS reports it back, for comparing a revision with a spec:
/// "If no network mode is specified, the default is bridge" (RegisterTaskDefinition,
/// networkMode); Fargate takes only an explicit awsvpc.
// NB: kept out of `normalise`, so that the content hash tagged on revisions registered by
// earlier versions stays the same and upgrading the operator registers nothing.
pub fn as_ecs_reports(content: &Value) -> Value {
    let mut content = content.clone();
    if let Value::Object(task) = &mut content {
        let fargate = task
            .get("requiresCompatibilities")
            .and_then(Value::as_array)
            .is_some_and(|c| c.iter().any(|c| c == "FARGATE"));
        if !fargate && !task.contains_key("networkMode") {
            task.insert("networkMode".into(), Value::from("bridge"));
        }
    }
    content
}

fn container_defaults(container: &mut Map<String, Value>, network_mode: Option<&str>) {
    default_to(container, "essential", Value::Bool(true));
    default_to(container, "cpu", Value::from(0));
    if let Some(Value::Array(ports)) = container.get_mut("portMappings") {
        for port in ports.iter_mut().filter_map(Value::as_object_mut) {
            default_to(port, "protocol", Value::from("tcp"));
            // NB: under awsvpc and host networking the host port is the container port.
            if matches!(network_mode, Some("awsvpc" | "host"))
                && port.get("hostPort").is_none_or(Value::is_null)
                && let Some(container_port) = port.get("containerPort").cloned()
            {
                port.insert("hostPort".into(), container_port);
            }
        }
    }
    if let Some(Value::Object(check)) = container.get_mut("healthCheck") {
        for (key, default) in [("interval", 30), ("timeout", 5), ("retries", 3), ("startPeriod", 0)] {
            default_to(check, key, Value::from(default));
        }
    }
}

/// Sets `key` to ECS's default when it is absent or null: a null is dropped later, so
/// keeping it would leave the default to a second pass, and normalising would not be
/// idempotent.
fn default_to(map: &mut Map<String, Value>, key: &str, default: Value) {
    if map.get(key).is_none_or(Value::is_null) {
        map.insert(key.into(), default);
    }
}

/// Removes nulls, empty lists and empty objects: ECS does not distinguish them from absent.
pub fn drop_empty(value: Value) -> Option<Value> {
    match value {
        Value::Null => None,
        Value::Array(items) => {
            let items: Vec<Value> = items.into_iter().filter_map(drop_empty).collect();
            (!items.is_empty()).then_some(Value::Array(items))
        }
        Value::Object(map) => {
            let map: Map<String, Value> = map
                .into_iter()
                .filter_map(|(k, v)| drop_empty(v).map(|v| (k, v)))
                .collect();
            (!map.is_empty()).then_some(Value::Object(map))
        }
        other => Some(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn content(json: Value) -> Value {
        task_definition_content(&serde_json::from_value(json).expect("spec"))
    }

    #[test]
    fn defaults_ecs_fills_in_do_not_change_the_content() {
        let short = content(json!({
            "networkMode": "awsvpc", "cpu": "1 vCPU", "memory": "2 GB",
            "containerDefinitions": [{"name": "web", "image": "nginx",
                "portMappings": [{"containerPort": 80}],
                "healthCheck": {"command": ["CMD", "true"]},
                "environment": []}]
        }));
        let explicit = content(json!({
            "networkMode": "awsvpc", "cpu": "1024", "memory": "2048",
            "containerDefinitions": [{"name": "web", "image": "nginx", "essential": true, "cpu": 0,
                "portMappings": [{"containerPort": 80, "hostPort": 80, "protocol": "tcp"}],
                "healthCheck": {"command": ["CMD", "true"], "interval": 30, "timeout": 5, "retries": 3, "startPeriod": 0}}],
            "tags": [{"key": "team", "value": "a"}]
        }));
        assert_eq!(short, explicit);
        assert_eq!(content_hash(&short), content_hash(&explicit));
    }

    #[test]
    fn bridge_is_the_network_mode_when_none_is_given() {
        let omitted = content(json!({"containerDefinitions": [{"name": "web", "image": "nginx"}]}));
        let bridge =
            content(json!({"networkMode": "bridge", "containerDefinitions": [{"name": "web", "image": "nginx"}]}));
        assert_ne!(
            content_hash(&omitted),
            content_hash(&bridge),
            "the hash is of the spec as written"
        );
        assert_eq!(as_ecs_reports(&omitted), as_ecs_reports(&bridge));
        let fargate = content(json!({"requiresCompatibilities": ["FARGATE"],
            "containerDefinitions": [{"name": "web", "image": "nginx"}]}));
        assert_eq!(as_ecs_reports(&fargate).get("networkMode"), None);
    }

    #[test]
    fn a_real_change_changes_the_hash() {
        let a = content(json!({"containerDefinitions": [{"name": "web", "image": "nginx:1"}]}));
        let b = content(json!({"containerDefinitions": [{"name": "web", "image": "nginx:2"}]}));
        assert_ne!(content_hash(&a), content_hash(&b));
    }

    #[test]
    fn bridge_mode_keeps_dynamic_host_ports() {
        let value = content(json!({"networkMode": "bridge",
            "containerDefinitions": [{"name": "web", "image": "nginx", "portMappings": [{"containerPort": 80}]}]}));
        assert_eq!(
            value["containerDefinitions"][0]["portMappings"][0].get("hostPort"),
            None
        );
    }

    #[test]
    fn normalising_twice_changes_nothing() {
        for (name, json) in crate::ecs::task_definition_fixtures() {
            let once = normalise(json);
            assert_eq!(normalise(once.clone()), once, "{name}");
        }
    }
}
