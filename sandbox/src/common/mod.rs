//! The simulator framework shared by every simulated account (Freshworks here, Google People in
//! `crate::google`): clock, fault injection, request counters, server start/stop and the
//! generic control API.
//!
//! How an account server is put together:
//! 1. build the API [`axum::Router`] (final routes, fallback, account middleware such as auth);
//! 2. [`instrument`] it (faults + counters) with the account's [`ControlPlane`];
//! 3. [`mount`] it with the account's own control routes (nested under `/_sandbox`);
//! 4. [`serve`] the result on 127.0.0.1.

pub mod clock;
pub mod control;
pub mod counters;
pub mod faults;
pub mod server;

pub use clock::{Clock, ClockMode};
pub use control::{CONTROL_PREFIX, ControlPlane, control_error, instrument, mount};
pub use counters::{Counters, CountersSnapshot};
pub use faults::{FaultKind, FaultRule, Faults};
pub use server::{ServerHandle, serve};
