//! `User.events`: the audit trail as a cursor connection, newest first.
//!
//! The cursor is opaque to clients: the base64url of `ev:<event id>`. Event ids increase in
//! the order events are recorded, so paging "older than this id" neither repeats nor skips
//! an event while new ones arrive (they are newer than every page already read).

use async_graphql::{Enum, ID, SimpleObject};
use base64::Engine;
use chrono::{DateTime, Utc};

use crate::domain::{Error, Event, EventKind, EventPage, Result};

/// What happened to a user.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(name = "EventKind")]
pub enum EventKindGql {
    /// A session was opened with `loginWithCode`.
    Login,
    /// A new (app, openid) joined the user.
    IdentityLinked,
    /// The user's unionid became known.
    #[graphql(name = "UNIONID_LEARNED")]
    UnionIdLearned,
    /// Another user was merged into this one (`detail`: the user id merged in).
    Merged,
    Subscribed,
    Unsubscribed,
    PhoneBound,
    /// Every session of the user was ended (`detail`: how many).
    SessionsRevoked,
}

impl From<EventKind> for EventKindGql {
    fn from(k: EventKind) -> Self {
        match k {
            EventKind::Login => EventKindGql::Login,
            EventKind::IdentityLinked => EventKindGql::IdentityLinked,
            EventKind::UnionIdLearned => EventKindGql::UnionIdLearned,
            EventKind::Merged => EventKindGql::Merged,
            EventKind::Subscribed => EventKindGql::Subscribed,
            EventKind::Unsubscribed => EventKindGql::Unsubscribed,
            EventKind::PhoneBound => EventKindGql::PhoneBound,
            EventKind::SessionsRevoked => EventKindGql::SessionsRevoked,
        }
    }
}

/// One thing that happened to a user.
#[derive(SimpleObject, Clone, Debug)]
#[graphql(name = "Event")]
pub struct EventGql {
    pub id: ID,
    pub kind: EventKindGql,
    /// The app it happened in, when there is one.
    pub app_id: Option<String>,
    pub open_id: Option<String>,
    pub at: DateTime<Utc>,
    /// For example the user id merged in.
    pub detail: Option<String>,
}

/// An event and the cursor to page on from it.
#[derive(SimpleObject, Clone, Debug)]
pub struct EventEdge {
    pub cursor: String,
    pub node: EventGql,
}

/// Where a page ends.
#[derive(SimpleObject, Clone, Debug)]
pub struct PageInfo {
    pub has_next_page: bool,
    pub end_cursor: Option<String>,
}

/// A page of a user's events, newest first.
#[derive(SimpleObject, Clone, Debug)]
pub struct EventConnection {
    pub edges: Vec<EventEdge>,
    pub page_info: PageInfo,
}

const CURSOR_PREFIX: &str = "ev:";

/// The opaque cursor of an event.
pub fn encode_cursor(id: i64) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{CURSOR_PREFIX}{id}"))
}

/// The event id inside a cursor; BAD_REQUEST for anything this server did not hand out.
pub fn decode_cursor(cursor: &str) -> Result<i64> {
    let bad = || Error::BadRequest("after is not a cursor of this connection".into());
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .map_err(|_| bad())?;
    let text = String::from_utf8(bytes).map_err(|_| bad())?;
    text.strip_prefix(CURSOR_PREFIX)
        .and_then(|id| id.parse::<i64>().ok())
        .filter(|id| *id > 0)
        .ok_or_else(bad)
}

impl From<Event> for EventGql {
    fn from(e: Event) -> Self {
        EventGql {
            id: ID(e.id.to_string()),
            kind: e.kind.into(),
            app_id: e.app_id,
            open_id: e.open_id,
            at: e.at,
            detail: e.detail,
        }
    }
}

impl From<EventPage> for EventConnection {
    fn from(page: EventPage) -> Self {
        let edges: Vec<EventEdge> = page
            .events
            .into_iter()
            .map(|e| EventEdge {
                cursor: encode_cursor(e.id),
                node: e.into(),
            })
            .collect();
        EventConnection {
            page_info: PageInfo {
                has_next_page: page.has_next_page,
                end_cursor: edges.last().map(|e| e.cursor.clone()),
            },
            edges,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_foreign_ones_are_bad_requests() {
        for id in [1, 42, i64::MAX] {
            assert_eq!(decode_cursor(&encode_cursor(id)).unwrap(), id);
        }
        for bad in [
            "",
            "42",
            "ev:42",
            "!!!",
            &encode_cursor(0),
            &encode_cursor(-5),
        ] {
            assert!(
                matches!(decode_cursor(bad), Err(Error::BadRequest(_))),
                "{bad}"
            );
        }
        let not_ours = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode("xx:42");
        assert!(decode_cursor(&not_ours).is_err());
    }

    #[test]
    fn every_kind_has_its_contract_name() {
        let names: Vec<String> = EventKind::ALL
            .into_iter()
            .map(|k| async_graphql::resolver_utils::enum_value(EventKindGql::from(k)).to_string())
            .collect();
        assert_eq!(
            names,
            [
                "LOGIN",
                "IDENTITY_LINKED",
                "UNIONID_LEARNED",
                "MERGED",
                "SUBSCRIBED",
                "UNSUBSCRIBED",
                "PHONE_BOUND",
                "SESSIONS_REVOKED"
            ]
        );
    }
}
