//! Everything that speaks ECS: clients, the spec <-> SDK mapping, error classification.

pub mod normalize;
pub mod wire;
