//! ECS's JSON wire form <-> aws-sdk-ecs types.
//!
//! Every spec type serialises to exactly the JSON ECS's API takes (same member names and
//! shapes), so instead of a hand-written builder call per member the operator hands that JSON
//! to the SDK's own schema codec, which reads it into the SDK input type (and writes SDK
//! output types back to JSON for comparison). A member the SDK does not know would be
//! silently dropped; tests/api_coverage.rs proves there are none.

use aws_smithy_json::codec::JsonCodec;
use aws_smithy_schema::codec::Codec;
use aws_smithy_schema::serde::{SerdeError, SerializableStruct, ShapeDeserializer, ShapeSerializer};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// A value that did not survive the trip between the spec types and the SDK's.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// The spec value could not be written as JSON.
    #[error("cannot encode {0} as ECS JSON: {1}")]
    Encode(&'static str, serde_json::Error),
    /// The SDK rejected the JSON, for example a required member is missing.
    #[error("ECS JSON does not fit the SDK's {0}: {1}")]
    Sdk(&'static str, SerdeError),
    /// ECS returned JSON the spec types cannot read.
    #[error("cannot read ECS {0} into the spec types: {1}")]
    Decode(&'static str, serde_json::Error),
}

/// Reads a spec value into an SDK type through its JSON wire form, e.g.
/// `to_sdk(&input, RegisterTaskDefinitionInput::deserialize)`.
pub fn to_sdk<T, U>(
    value: &T,
    read: impl FnOnce(&mut dyn ShapeDeserializer) -> Result<U, SerdeError>,
) -> Result<U, WireError>
where
    T: Serialize,
{
    let name = std::any::type_name::<U>().rsplit("::").next().unwrap_or("value");
    let bytes = serde_json::to_vec(value).map_err(|e| WireError::Encode(name, e))?;
    let codec = JsonCodec::default();
    let mut deserializer = codec.create_deserializer(&bytes);
    read(&mut deserializer).map_err(|e| WireError::Sdk(name, e))
}

/// Writes an SDK value as ECS JSON and reads it into a spec-shaped type, so observed state
/// can be compared with desired state in one vocabulary.
pub fn from_sdk<S, T>(value: &S) -> Result<T, WireError>
where
    S: SerializableStruct,
    T: DeserializeOwned,
{
    let name = std::any::type_name::<S>().rsplit("::").next().unwrap_or("value");
    let codec = JsonCodec::default();
    let mut serializer = codec.create_serializer();
    serializer
        .write_struct(value.schema(), value)
        .map_err(|e| WireError::Sdk(name, e))?;
    serde_json::from_slice(&serializer.finish()).map_err(|e| WireError::Decode(name, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::ecs_types::RegisterTaskDefinitionInput;
    use aws_sdk_ecs::operation::register_task_definition::RegisterTaskDefinitionInput as SdkInput;

    fn linux_parameters() -> serde_json::Value {
        let fixtures = crate::ecs::task_definition_fixtures();
        fixtures
            .into_iter()
            .find(|(n, _)| *n == "linux-parameters")
            .expect("fixture")
            .1
    }

    #[test]
    fn a_task_definition_reaches_the_sdk_with_every_member() {
        let spec: RegisterTaskDefinitionInput = serde_json::from_value(linux_parameters()).expect("spec");
        let sdk = to_sdk(&spec, SdkInput::deserialize).expect("to SDK");
        let container = &sdk.container_definitions.as_deref().expect("containers")[0];
        let linux = container.linux_parameters.as_ref().expect("linuxParameters");
        assert_eq!(linux.tmpfs.as_deref().expect("tmpfs")[0].size, 128);
        assert_eq!(
            linux.capabilities.as_ref().and_then(|c| c.add.clone()),
            Some(vec!["NET_ADMIN".to_string(), "NET_RAW".to_string()])
        );
        assert_eq!(sdk.pid_mode.as_ref().map(|m| m.as_str()), Some("task"));
        assert_eq!(container.ulimits.as_deref().expect("ulimits")[0].soft_limit, -1);
    }

    #[test]
    fn every_fixture_survives_the_round_trip_through_the_sdk() {
        for (name, json) in crate::ecs::task_definition_fixtures() {
            let spec: RegisterTaskDefinitionInput = serde_json::from_value(json.clone()).expect("spec");
            let sdk = to_sdk(&spec, SdkInput::deserialize).expect("to SDK");
            let back: RegisterTaskDefinitionInput = from_sdk(&sdk).expect("from SDK");
            // NB: the SDK writes `cpu: 0` for containers without one, as ECS does.
            assert_eq!(
                crate::ecs::normalize::task_definition_content(&back),
                crate::ecs::normalize::task_definition_content(&spec),
                "{name}"
            );
            assert_eq!(back.tags, spec.tags, "{name}");
        }
    }
}
