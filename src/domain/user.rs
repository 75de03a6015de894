//! People and the identities apps see of them.

use chrono::{DateTime, Utc};

use super::app::AppKind;
use super::ids::{AppId, OpenId, UnionId, UserId};
use super::unionid::UnionLookup;

/// One person within one open-platform scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: UserId,
    /// The open-platform label (`op:<label>`) or the app itself (`app:<appid>`).
    pub scope: String,
    pub union_id: Option<UnionId>,
    pub created_at: DateTime<Utc>,
}

/// How one app sees one person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub id: String,
    pub user_id: UserId,
    pub app_id: AppId,
    pub app_kind: AppKind,
    pub open_id: OpenId,
    pub union_id: Option<UnionId>,
    pub subscribed: Option<bool>,
    /// While the unionid is unknown: where its lookup stands.
    pub union_lookup: Option<UnionLookup>,
    pub first_seen_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
}

/// A live end-user session: its user, and the SHA-256 of its token that names it (the token
/// itself is never kept).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub user: User,
    pub token_hash: String,
}

/// A phone number a user shared from a mini program (`bindPhoneNumber`). Personal data: its
/// `Debug` shows no digits, so it never reaches a log.
#[derive(Clone, PartialEq, Eq)]
pub struct PhoneNumber {
    /// With the country code, as WeChat gives it.
    pub phone_number: String,
    pub pure_phone_number: String,
    pub country_code: String,
    pub bound_at: DateTime<Utc>,
}

impl std::fmt::Debug for PhoneNumber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PhoneNumber")
            .field("bound_at", &self.bound_at)
            .finish_non_exhaustive()
    }
}
