//! wxunion: one user identity across all of an organisation's WeChat apps.
//!
//! WeChat gives a person a different openid in every app and one unionid across the apps of
//! one open-platform account. wxunion turns logins, official-account callbacks and openids
//! into one user record per unionid, and serves it over GraphQL.
//!
//! Layout: `config` (TOML + env), `app` (assembly), `http` (routes), `graphql` (API),
//! `identity` (the domain and its use cases), `store` (all SQL), `cache` (Redis or in-process),
//! `wechat` (API client, tokens, crypto, XML, the callback envelope), `jobs` (the callback inbox and the workers), `sim` (the
//! WeChat simulator), `sandbox` (zero-config mode).

pub mod app;
pub mod cache;
pub mod clock;
pub mod config;
pub mod domain;
pub mod graphql;
pub mod http;
pub mod identity;
pub mod jobs;
pub mod sandbox;
pub mod sim;
pub mod store;
pub mod telemetry;
pub mod wechat;
