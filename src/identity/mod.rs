//! The use cases: log in with a code, resolve an official-account openid, record callback
//! events, look people up, end sessions, read the audit trail, walk followers. Transports
//! (`graphql`, `http`) parse their input into the domain's id newtypes and call [`Service`];
//! storage stays in `store`.

pub mod audit;
pub mod deadline;
pub mod login_guard;
mod lookups;
mod phones;
mod service;
mod sessions;
pub mod sync;
pub mod unbound;

pub use audit::Pruned;
pub use service::{Login, Readiness, Service, connect_storage};
