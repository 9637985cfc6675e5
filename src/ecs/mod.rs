//! Everything that speaks ECS: clients, the spec <-> SDK mapping, normalisation, error
//! classification and the tags that record ownership.

pub mod client;
pub mod diff;
pub mod error;
pub mod limits;
pub mod normalize;
pub mod ownership;
pub mod roles;
pub mod wire;

/// The realistic task definitions of tests/fixtures/task_definitions, as ECS JSON.
#[cfg(test)]
pub(crate) fn task_definition_fixtures() -> Vec<(&'static str, serde_json::Value)> {
    [
        "fargate-web",
        "ec2-bridge",
        "efs-access-point",
        "firelens",
        "linux-parameters",
    ]
    .into_iter()
    .map(|name| {
        let path = format!(
            "{}/tests/fixtures/task_definitions/{name}.json",
            env!("CARGO_MANIFEST_DIR")
        );
        let text = std::fs::read_to_string(path).expect("fixture");
        (name, serde_json::from_str(&text).expect("fixture JSON"))
    })
    .collect()
}
