//! The GraphQL API: schema construction, and the SDL that `wxunion schema` prints.
//!
//! Resolvers parse arguments into domain ids, call `identity::Service`, and map errors through
//! [`errors::to_graphql`]: that is the only place where `extensions.code` is decided.

mod auth;
pub mod errors;
mod events;
pub mod limits;
mod mutation;
mod query;
mod types;
pub mod variables;

use async_graphql::{EmptySubscription, Schema, SchemaBuilder};

pub use auth::{Caller, ClientAddress};
pub use mutation::Mutation;
pub use query::Query;

use crate::identity::Service;

/// The executable schema type.
pub type ApiSchema = Schema<Query, Mutation, EmptySubscription>;

/// Builds the schema; with `service` absent it is good for printing the SDL only.
pub fn build(service: Option<Service>) -> ApiSchema {
    builder(service).finish()
}

/// [`build`], skipping async-graphql's validation rules (it still counts depth and complexity
/// against the limits): only for documents that passed full validation before, with variables
/// that need no check ([`variables::taken_as_given`]).
pub fn build_prevalidated(service: Option<Service>) -> ApiSchema {
    builder(service)
        .validation_mode(async_graphql::ValidationMode::Fast)
        .finish()
}

fn builder(service: Option<Service>) -> SchemaBuilder<Query, Mutation, EmptySubscription> {
    let mut builder = Schema::build(Query, Mutation, EmptySubscription)
        .limit_depth(limits::MAX_DEPTH)
        .limit_complexity(limits::MAX_COMPLEXITY)
        .limit_recursive_depth(limits::MAX_RECURSIVE_DEPTH);
    if let Some(service) = service {
        builder = builder.data(service);
    }
    builder
}

/// The SDL, exactly as `schema.graphql` must hold it.
pub fn sdl() -> String {
    build(None).sdl()
}
