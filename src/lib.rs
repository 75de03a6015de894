//! wxunion: one user identity across all of an organisation's WeChat apps.
//!
//! WeChat gives a person a different openid in every app and one unionid across the apps of
//! one open-platform account. wxunion turns logins, official-account callbacks and openids
//! into one user record per unionid, and serves it over GraphQL.
//!
//! Layout, from the bottom up (each module imports only modules below it; a test checks it):
//! `domain` (ids, apps, users, the error type, the linking and retry rules) and `clock`;
//! `wechat` (WeChat's wire format: client, tokens, crypto, envelope, XML) and `cache`;
//! `config` (TOML + env) and `store` (all SQL); `identity` (the use cases); `graphql` (the API)
//! and `jobs` (callback inbox and workers); `http` (routes and the server); `app` (assembly),
//! `sim` (the WeChat simulator), `sandbox` (zero-config mode) and `doctor` (`wxunion check`);
//! `fuzzing` (the fuzz targets' bodies, which `fuzz/` runs and the tests replay).

pub mod app;
pub mod cache;
pub mod clock;
pub mod config;
pub mod doctor;
pub mod domain;
pub mod fuzzing;
pub mod graphql;
pub mod http;
pub mod identity;
pub mod jobs;
pub mod sandbox;
pub mod sim;
pub mod store;
pub mod telemetry;
pub mod wechat;

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod architecture_tests;
