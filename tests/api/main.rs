//! wxunion's integration tests: one binary, each test with its own server, database, Redis
//! prefix and WeChat simulator. PostgreSQL (127.0.0.1:5432) and Redis (127.0.0.1:6379) must
//! be running; `.ci/run` starts them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod auth;
mod cache;
mod callback;
mod callback_faults;
mod cli;
mod crash_under_load;
mod events;
mod faults;
mod follower_sync;
mod graphiql;
mod graphql_http;
mod harness;
mod helpers;
mod link_races;
mod login;
mod lookups;
mod operator_metrics;
mod ops;
mod phone;
mod proxy;
mod rate_limit;
mod resolve;
mod sandbox;
mod server_limits;
mod sessions;
mod tokens;
mod tracing;
mod unionid_status;
