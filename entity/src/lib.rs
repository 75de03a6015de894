//! sea-orm entities: one module per table, nothing else.
//!
//! These are storage shapes only. GraphQL types and domain types live in the main crate, so a
//! column can change without changing what clients see.

pub mod events;
pub mod follower_syncs;
pub mod identities;
pub mod jobs;
pub mod phone_numbers;
pub mod sessions;
pub mod users;
