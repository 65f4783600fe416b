//! The sync engine: observe -> plan (pure) -> execute, with state in redb.
//!
//! - [`model`]: values, records, sides, canonical form and hashing.
//! - [`source`]: what the engine needs from a connector ([`Source`]) and from
//!   mapper plugins ([`Mappers`]), mirroring the WIT contract.
//! - [`mapping`]: field pairs, consent translation.
//! - [`policy`]: a sync's settings; [`rules`]: IF/THEN rules.
//! - [`baseline`]: links and field bases; [`plan`](mod@plan): the pure planner.
//! - [`state`]: the redb store; [`run`]: the executor (one file per phase of a run).

pub mod baseline;
pub mod mapping;
#[cfg(test)]
pub mod memory;
pub mod model;
pub mod plan;
pub mod policy;
pub mod rules;
pub mod run;
pub mod source;
pub mod state;

pub use plan::{Plan, plan};
pub use policy::SyncPolicy;
pub use run::{Engine, EngineError, RunOptions, RunOutcome, RunReport};
pub use source::{Mappers, Source};
pub use state::SyncStore;
