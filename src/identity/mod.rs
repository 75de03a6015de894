//! The domain: people, the identities apps see of them, and the rules that join the two.
//!
//! Transports (`graphql`, `http::callback`) parse their input into the id newtypes here and
//! call [`Service`]; storage details stay in `store`.

mod ids;
mod service;
pub mod sync;

use chrono::{DateTime, Utc};

pub use ids::{AppId, LoginCode, OpenId, UnionId};
pub use service::{Login, Service};

use crate::config::AppKind;

/// One person within one open-platform scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: String,
    pub scope: String,
    pub union_id: Option<String>,
    pub created_at: DateTime<Utc>,
}

impl From<entity::users::Model> for User {
    fn from(m: entity::users::Model) -> Self {
        User {
            id: m.id,
            scope: m.scope,
            union_id: m.union_id,
            created_at: m.created_at,
        }
    }
}

/// How one app sees one person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub id: String,
    pub user_id: String,
    pub app_id: String,
    pub app_kind: AppKind,
    pub open_id: String,
    pub union_id: Option<String>,
    pub subscribed: Option<bool>,
    pub first_seen_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
}

impl From<entity::identities::Model> for Identity {
    fn from(m: entity::identities::Model) -> Self {
        Identity {
            id: m.id,
            user_id: m.user_id,
            app_id: m.app_id,
            // Rows are only ever written from a validated AppKind; an unknown value can only
            // come from a hand-edited database, and reads as the most common kind.
            app_kind: AppKind::parse(&m.app_kind).unwrap_or(AppKind::MiniProgram),
            open_id: m.open_id,
            union_id: m.union_id,
            subscribed: m.subscribed,
            first_seen_at: m.first_seen_at,
            last_seen_at: m.last_seen_at,
        }
    }
}
