//! Everything that speaks ECS: clients, the spec <-> SDK mapping, normalisation, error
//! classification and the tags that record ownership.

pub mod client;
pub mod diff;
pub mod error;
pub mod normalize;
pub mod ownership;
pub mod wire;
