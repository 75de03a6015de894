//! The use cases: log in with a code, resolve an official-account openid, record callback
//! events, look people up, walk followers. Transports (`graphql`, `http`) parse their input
//! into the domain's id newtypes and call [`Service`]; storage stays in `store`.

mod service;
pub mod sync;

pub use service::{Login, Readiness, Service, connect_storage};
