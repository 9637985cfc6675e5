//! Property tests of the spec -> ECS request mapping and of task definition normalisation,
//! over generated task definitions (and over arbitrary JSON): no panic, normalisation is
//! idempotent, and the content hash depends on content only.

use aws_sdk_ecs::operation::register_task_definition::RegisterTaskDefinitionInput as SdkRegisterInput;
use ecs_operator::api::ecs_types::RegisterTaskDefinitionInput;
use ecs_operator::ecs::normalize::{content_hash, normalise, task_definition_content};
use ecs_operator::ecs::wire::to_sdk;
use proptest::prelude::*;
use serde_json::{Map, Value, json};

/// Present with a value, or absent.
fn maybe<T: std::fmt::Debug + Clone + 'static>(value: impl Strategy<Value = T> + 'static) -> BoxedStrategy<Option<T>> {
    prop::option::of(value).boxed()
}

fn size(unit: &'static str) -> impl Strategy<Value = String> {
    prop_oneof![
        (0u32..20_000).prop_map(|n| n.to_string()),
        (1u32..16).prop_map(move |n| format!("{n} {unit}")),
        (1u32..16).prop_map(move |n| format!("{n}{}", unit.to_lowercase())),
        (1u32..8).prop_map(move |n| format!("0.{n} {unit}")),
        "[a-z ]{0,6}",
    ]
}

fn port_mapping() -> impl Strategy<Value = Value> {
    (
        0u16..9000,
        maybe(0u16..9000),
        maybe(prop::sample::select(vec!["tcp", "udp"])),
    )
        .prop_map(|(c, h, p)| {
            let mut m = json!({"containerPort": c});
            if let Some(h) = h {
                m["hostPort"] = json!(h);
            }
            if let Some(p) = p {
                m["protocol"] = json!(p);
            }
            m
        })
}

fn health_check() -> impl Strategy<Value = Value> {
    (maybe(1u8..60), maybe(1u8..30), maybe(1u8..10), maybe(0u16..300)).prop_map(|(i, t, r, s)| {
        let mut h = json!({"command": ["CMD-SHELL", "true"]});
        for (key, value) in [
            ("interval", i.map(u16::from)),
            ("timeout", t.map(u16::from)),
            ("retries", r.map(u16::from)),
            ("startPeriod", s),
        ] {
            if let Some(v) = value {
                h[key] = json!(v);
            }
        }
        h
    })
}

fn container() -> impl Strategy<Value = Value> {
    (
        "[a-z]{1,4}",
        "[a-z]{1,6}(:[0-9]{1,2})?",
        maybe(0u32..4096),
        maybe(0u32..8192),
        maybe(any::<bool>()),
        prop::collection::vec(port_mapping(), 0..3),
        prop::collection::vec(("[A-Z]{1,3}", "[a-z0-9]{0,3}"), 0..3),
        maybe(health_check()),
        maybe(prop::collection::vec("[a-z]{1,4}", 0..3)),
        maybe(prop::collection::vec(("[a-z]{1,4}", "[a-z/]{1,6}"), 0..2)),
    )
        .prop_map(
            |(name, image, cpu, memory, essential, ports, env, health, command, mounts)| {
                let mut c = json!({"name": name, "image": image, "portMappings": ports});
                if let Some(v) = cpu {
                    c["cpu"] = json!(v);
                }
                if let Some(v) = memory {
                    c["memory"] = json!(v);
                }
                if let Some(v) = essential {
                    c["essential"] = json!(v);
                }
                c["environment"] = env.into_iter().map(|(n, v)| json!({"name": n, "value": v})).collect();
                if let Some(h) = health {
                    c["healthCheck"] = h;
                }
                if let Some(cmd) = command {
                    c["command"] = json!(cmd);
                }
                if let Some(m) = mounts {
                    c["mountPoints"] = m
                        .into_iter()
                        .map(|(v, p)| json!({"sourceVolume": v, "containerPath": p}))
                        .collect();
                }
                c
            },
        )
}

/// Task definitions as users write them: some fields set, some left to ECS's defaults,
/// some written out, lists sometimes empty.
fn task_definition() -> impl Strategy<Value = Value> {
    (
        "[a-z]{1,8}",
        maybe(prop::sample::select(vec!["bridge", "host", "awsvpc", "none"])),
        maybe(size("vCPU")),
        maybe(size("GB")),
        maybe(prop::collection::vec(
            prop::sample::select(vec!["EC2", "FARGATE", "EXTERNAL"]),
            0..3,
        )),
        prop::collection::vec(container(), 1..4),
        maybe(prop::collection::vec(("[a-z]{1,4}", maybe("[a-z/]{1,6}")), 0..2)),
        maybe(prop::collection::vec(("[a-z]{1,4}", "[a-z]{0,4}"), 0..3)),
    )
        .prop_map(|(family, mode, cpu, memory, compat, containers, volumes, tags)| {
            let mut t = json!({"family": family, "containerDefinitions": containers});
            if let Some(v) = mode {
                t["networkMode"] = json!(v);
            }
            if let Some(v) = cpu {
                t["cpu"] = json!(v);
            }
            if let Some(v) = memory {
                t["memory"] = json!(v);
            }
            if let Some(v) = compat {
                t["requiresCompatibilities"] = json!(v);
            }
            if let Some(v) = volumes {
                t["volumes"] = v
                    .into_iter()
                    .map(|(name, path)| match path {
                        Some(p) => json!({"name": name, "host": {"sourcePath": p}}),
                        None => json!({"name": name}),
                    })
                    .collect();
            }
            if let Some(v) = tags {
                t["tags"] = v.into_iter().map(|(k, v)| json!({"key": k, "value": v})).collect();
            }
            t
        })
}

/// Arbitrary JSON, a few levels deep.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        "[a-zA-Z0-9 .]{0,8}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::vec(
                (
                    prop::sample::select(vec![
                        "cpu",
                        "memory",
                        "networkMode",
                        "containerDefinitions",
                        "portMappings",
                        "hostPort",
                        "containerPort",
                        "essential",
                        "environment",
                        "healthCheck",
                        "tags",
                        "x",
                    ]),
                    inner
                ),
                0..5
            )
            .prop_map(|kv| Value::Object(kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect::<Map<_, _>>())),
        ]
    })
}

/// The same JSON with every object's keys in reverse order.
fn reversed(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(map.iter().rev().map(|(k, v)| (k.clone(), reversed(v))).collect()),
        Value::Array(items) => Value::Array(items.iter().map(reversed).collect()),
        other => other.clone(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

    #[test]
    fn normalising_twice_changes_nothing(spec in task_definition()) {
        let once = normalise(spec);
        prop_assert_eq!(normalise(once.clone()), once);
    }

    #[test]
    fn a_spec_maps_to_an_ecs_request_and_its_content_is_stable(spec in task_definition()) {
        let input: RegisterTaskDefinitionInput = serde_json::from_value(spec).expect("a valid spec");
        let request = to_sdk(&input, SdkRegisterInput::deserialize);
        prop_assert!(request.is_ok(), "{:?}", request.err());
        let content = task_definition_content(&input);
        // Registering the normalised content again is the same content.
        let again: RegisterTaskDefinitionInput = serde_json::from_value(content.clone()).expect("content is a spec");
        prop_assert_eq!(task_definition_content(&again), content.clone());
        prop_assert_eq!(content_hash(&task_definition_content(&again)), content_hash(&content));
    }

    #[test]
    fn the_content_hash_ignores_key_order(spec in task_definition()) {
        let content = normalise(spec.clone());
        prop_assert_eq!(content_hash(&normalise(reversed(&spec))), content_hash(&content));
    }

    #[test]
    fn arbitrary_json_normalises_without_panicking_and_idempotently(value in any_json()) {
        let once = normalise(value);
        prop_assert_eq!(normalise(once.clone()), once);
    }
}
