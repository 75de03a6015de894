//! The audit trail: what happened to a user, recorded in the same transaction as the change
//! it describes.
//!
//! [`link_events`] says which events a link records, as a pure function of what the link
//! changed; `store::links` calls it inside the link's transaction and writes its answer there.

use chrono::{DateTime, Utc};

use super::error::Error;
use super::ids::UserId;
use super::link::{Decision, Target};

/// What happened; stored as the event's `kind` column.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// A session was opened with `loginWithCode`.
    Login,
    /// A new (app, openid) joined the user (first sighting, or an identity moved to it alone).
    IdentityLinked,
    /// The user's unionid became known (created with it, or adopted later).
    UnionIdLearned,
    /// Another user was merged into this one; `detail` is the id merged in.
    Merged,
    Subscribed,
    Unsubscribed,
    PhoneBound,
    /// `revokeSessions` ended the user's sessions; `detail` is how many.
    SessionsRevoked,
}

impl EventKind {
    pub const ALL: [EventKind; 8] = [
        EventKind::Login,
        EventKind::IdentityLinked,
        EventKind::UnionIdLearned,
        EventKind::Merged,
        EventKind::Subscribed,
        EventKind::Unsubscribed,
        EventKind::PhoneBound,
        EventKind::SessionsRevoked,
    ];

    /// The stable name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Login => "login",
            EventKind::IdentityLinked => "identity_linked",
            EventKind::UnionIdLearned => "unionid_learned",
            EventKind::Merged => "merged",
            EventKind::Subscribed => "subscribed",
            EventKind::Unsubscribed => "unsubscribed",
            EventKind::PhoneBound => "phone_bound",
            EventKind::SessionsRevoked => "sessions_revoked",
        }
    }

    /// The inverse of [`EventKind::as_str`], for rows read back.
    pub fn parse(s: &str) -> Option<EventKind> {
        EventKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// An event to record; the store gives it its id, its user and its time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewEvent {
    pub kind: EventKind,
    /// The app it happened in, when there is one.
    pub app_id: Option<String>,
    pub open_id: Option<String>,
    pub detail: Option<String>,
}

impl NewEvent {
    pub fn new(kind: EventKind) -> NewEvent {
        NewEvent {
            kind,
            app_id: None,
            open_id: None,
            detail: None,
        }
    }

    /// The (app, openid) it happened through.
    pub fn through(mut self, app_id: &str, open_id: &str) -> NewEvent {
        self.app_id = Some(app_id.to_owned());
        self.open_id = Some(open_id.to_owned());
        self
    }

    pub fn with_detail(mut self, detail: impl Into<String>) -> NewEvent {
        self.detail = Some(detail.into());
        self
    }
}

/// A recorded event. Ids increase in the order events are recorded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub id: i64,
    pub user_id: UserId,
    pub kind: EventKind,
    pub app_id: Option<String>,
    pub open_id: Option<String>,
    pub at: DateTime<Utc>,
    pub detail: Option<String>,
}

/// One page of a user's events, newest first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventPage {
    pub events: Vec<Event>,
    /// Older events exist after the last one of this page.
    pub has_next_page: bool,
}

/// The page size when the client names none.
pub const DEFAULT_PAGE: i32 = 20;
/// The largest page a client may ask for.
pub const MAX_PAGE: i32 = 100;

/// Checks a requested page size: 0 to [`MAX_PAGE`], [`DEFAULT_PAGE`] when absent.
pub fn page_size(first: Option<i32>) -> Result<u64, Error> {
    match first.unwrap_or(DEFAULT_PAGE) {
        n @ 0..=MAX_PAGE => Ok(n as u64),
        n => Err(Error::BadRequest(format!(
            "first must be between 0 and {MAX_PAGE}, not {n}"
        ))),
    }
}

/// What one link changed, as far as the audit trail cares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkChange<'a> {
    /// The decision that was applied (never [`Decision::LookUpOwner`]).
    pub decision: &'a Decision,
    pub app_id: &'a str,
    pub open_id: &'a str,
    pub union_id: Option<&'a str>,
    /// The user the identity belonged to before (none for a first sighting).
    pub previous_user: Option<&'a UserId>,
    /// The link created the user the identity now belongs to, holding the unionid.
    pub created_with_union: bool,
    /// The identity's follow state before and after the link.
    pub subscribed_before: Option<bool>,
    pub subscribed_after: Option<bool>,
}

/// The events a link records on the user the identity belongs to afterwards, oldest first:
///
/// - `IDENTITY_LINKED` when a new (app, openid) joined the user: a first sighting, or an
///   identity moved to it alone (a conflict; `detail` names the user it left);
/// - `UNIONID_LEARNED` when the user's unionid became known: a user created with it, or one
///   adopting it (`detail` is the unionid). Every user with a unionid has exactly one;
/// - `MERGED` when the identity's user was merged into this one (`detail` is its id; its own
///   events move across with it, so they are not repeated here);
/// - `SUBSCRIBED` when the follow state became true, `UNSUBSCRIBED` when it went from true
///   to false (an unchanged state, or a first "not following", records nothing).
pub fn link_events(c: &LinkChange<'_>) -> Vec<NewEvent> {
    let event = |kind| NewEvent::new(kind).through(c.app_id, c.open_id);
    let learned = || {
        let e = event(EventKind::UnionIdLearned);
        match c.union_id {
            Some(u) => e.with_detail(u),
            None => e,
        }
    };
    let mut out = Vec::new();
    match c.decision {
        Decision::NewIdentity(target) => {
            out.push(event(EventKind::IdentityLinked));
            if c.created_with_union && *target != Target::NewWithoutUnion {
                out.push(learned());
            }
        }
        Decision::Conflict(target) => {
            let linked = event(EventKind::IdentityLinked);
            out.push(match c.previous_user {
                Some(from) => linked.with_detail(format!("moved from user {from}")),
                None => linked,
            });
            if c.created_with_union && *target != Target::NewWithoutUnion {
                out.push(learned());
            }
        }
        Decision::Adopt => out.push(learned()),
        Decision::Merge { .. } => {
            let merged = event(EventKind::Merged);
            out.push(match c.previous_user {
                Some(from) => merged.with_detail(from.as_str()),
                None => merged,
            });
        }
        Decision::Touch | Decision::LookUpOwner => {}
    }
    match (c.subscribed_before, c.subscribed_after) {
        (before, Some(true)) if before != Some(true) => out.push(event(EventKind::Subscribed)),
        (Some(true), Some(false)) => out.push(event(EventKind::Unsubscribed)),
        _ => {}
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use EventKind::*;

    #[test]
    fn kinds_round_trip_through_their_stored_names() {
        for k in EventKind::ALL {
            assert_eq!(EventKind::parse(k.as_str()), Some(k));
        }
        assert_eq!(EventKind::parse("LOGIN"), None);
    }

    #[test]
    fn page_sizes_are_bounded() {
        let cases = [
            (None, Some(20)),
            (Some(0), Some(0)),
            (Some(1), Some(1)),
            (Some(100), Some(100)),
            (Some(101), None),
            (Some(-1), None),
            (Some(i32::MAX), None),
        ];
        for (first, want) in cases {
            assert_eq!(page_size(first).ok(), want, "{first:?}");
        }
    }

    #[test]
    fn every_link_records_the_events_it_should() {
        let me = UserId::new("u-me");
        let them = UserId::new("u-them");
        struct Case<'a> {
            name: &'a str,
            decision: Decision,
            previous: Option<&'a UserId>,
            created_with_union: bool,
            subscribed: (Option<bool>, Option<bool>),
            want: Vec<(EventKind, Option<&'a str>)>,
        }
        let cases = [
            Case {
                name: "first sighting without unionid",
                decision: Decision::NewIdentity(Target::NewWithoutUnion),
                previous: None,
                created_with_union: false,
                subscribed: (None, None),
                want: vec![(IdentityLinked, None)],
            },
            Case {
                name: "first sighting creates the unionid's user",
                decision: Decision::NewIdentity(Target::NewWithUnion),
                previous: None,
                created_with_union: true,
                subscribed: (None, None),
                want: vec![(IdentityLinked, None), (UnionIdLearned, Some("U"))],
            },
            Case {
                name: "first sighting finds the unionid's user made concurrently",
                decision: Decision::NewIdentity(Target::NewWithUnion),
                previous: None,
                created_with_union: false,
                subscribed: (None, None),
                want: vec![(IdentityLinked, None)],
            },
            Case {
                name: "first sighting joins an existing user",
                decision: Decision::NewIdentity(Target::Existing(them.clone())),
                previous: None,
                created_with_union: false,
                subscribed: (None, None),
                want: vec![(IdentityLinked, None)],
            },
            Case {
                name: "a subscribe event is a follower's first sighting",
                decision: Decision::NewIdentity(Target::NewWithoutUnion),
                previous: None,
                created_with_union: false,
                subscribed: (None, Some(true)),
                want: vec![(IdentityLinked, None), (Subscribed, None)],
            },
            Case {
                name: "first sighting of someone not following records no unsubscribe",
                decision: Decision::NewIdentity(Target::NewWithoutUnion),
                previous: None,
                created_with_union: false,
                subscribed: (None, Some(false)),
                want: vec![(IdentityLinked, None)],
            },
            Case {
                name: "a returning login: nothing here (the session records LOGIN)",
                decision: Decision::Touch,
                previous: Some(&me),
                created_with_union: false,
                subscribed: (None, None),
                want: vec![],
            },
            Case {
                name: "a follow",
                decision: Decision::Touch,
                previous: Some(&me),
                created_with_union: false,
                subscribed: (Some(false), Some(true)),
                want: vec![(Subscribed, None)],
            },
            Case {
                name: "an unfollow",
                decision: Decision::Touch,
                previous: Some(&me),
                created_with_union: false,
                subscribed: (Some(true), Some(false)),
                want: vec![(Unsubscribed, None)],
            },
            Case {
                name: "a repeated follow state changes nothing",
                decision: Decision::Touch,
                previous: Some(&me),
                created_with_union: false,
                subscribed: (Some(true), Some(true)),
                want: vec![],
            },
            Case {
                name: "a first 'not following' from user/info is no unsubscribe",
                decision: Decision::Touch,
                previous: Some(&me),
                created_with_union: false,
                subscribed: (None, Some(false)),
                want: vec![],
            },
            Case {
                name: "adopting the unionid",
                decision: Decision::Adopt,
                previous: Some(&me),
                created_with_union: false,
                subscribed: (Some(true), Some(true)),
                want: vec![(UnionIdLearned, Some("U"))],
            },
            Case {
                name: "a merge names the user merged in",
                decision: Decision::Merge { into: them.clone() },
                previous: Some(&me),
                created_with_union: false,
                subscribed: (Some(true), Some(true)),
                want: vec![(Merged, Some("u-me"))],
            },
            Case {
                name: "a conflict moves the identity to an existing user",
                decision: Decision::Conflict(Target::Existing(them.clone())),
                previous: Some(&me),
                created_with_union: false,
                subscribed: (None, None),
                want: vec![(IdentityLinked, Some("moved from user u-me"))],
            },
            Case {
                name: "a conflict moves the identity to a new user of the unionid",
                decision: Decision::Conflict(Target::NewWithUnion),
                previous: Some(&me),
                created_with_union: true,
                subscribed: (None, None),
                want: vec![
                    (IdentityLinked, Some("moved from user u-me")),
                    (UnionIdLearned, Some("U")),
                ],
            },
        ];
        for c in cases {
            let union_id = match &c.decision {
                Decision::NewIdentity(Target::NewWithoutUnion) | Decision::Touch => None,
                _ => Some("U"),
            };
            let change = LinkChange {
                decision: &c.decision,
                app_id: "wx1",
                open_id: "o1",
                union_id,
                previous_user: c.previous,
                created_with_union: c.created_with_union,
                subscribed_before: c.subscribed.0,
                subscribed_after: c.subscribed.1,
            };
            let got: Vec<(EventKind, Option<String>)> = link_events(&change)
                .into_iter()
                .map(|e| {
                    assert_eq!(e.app_id.as_deref(), Some("wx1"), "{}", c.name);
                    assert_eq!(e.open_id.as_deref(), Some("o1"), "{}", c.name);
                    (e.kind, e.detail)
                })
                .collect();
            let want: Vec<(EventKind, Option<String>)> = c
                .want
                .iter()
                .map(|(k, d)| (*k, d.map(str::to_owned)))
                .collect();
            assert_eq!(got, want, "{}", c.name);
        }
    }
}
