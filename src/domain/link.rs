//! The linking rules: what to do when an app tells us about a person.
//!
//! Every path that learns of a person (a login, a callback event, `user/info`) ends in
//! [`decide`], a pure function of what is known; `store::links` reads those facts inside a
//! transaction and applies the decision in the same transaction.
//!
//! The rules:
//! - a new (app, openid) becomes an identity of the user that owns its unionid in the app's
//!   scope, creating that user if needed; without a unionid it gets a user of its own;
//! - a known identity whose unionid turns up joins the unionid's user: its own user *adopts*
//!   the unionid when nobody in the scope has it yet, or is *merged* into the user who has it
//!   (identities and sessions move, the old user records `merged_into`);
//! - WeChat never changes an openid's unionid, and a user never holds two. If it seems to
//!   happen (or the app moved to another open platform), follow WeChat: only this identity
//!   moves to the user of the unionid reported now (a *conflict*, logged).

use super::ids::UserId;

/// The user an existing identity belongs to, as far as linking cares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CurrentUser<'a> {
    pub id: &'a UserId,
    pub scope: &'a str,
    pub union_id: Option<&'a str>,
}

/// Who, in the sighting's scope, owns the sighting's unionid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Owner<'a> {
    /// Not looked up yet: [`decide`] answers [`Decision::LookUpOwner`] when it needs it.
    Unknown,
    Nobody,
    User(&'a UserId),
}

/// What is known when an app reports `(open_id, union_id?)` in `scope`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Known<'a> {
    /// The scope of the reporting app (its open platform, or the app itself).
    pub scope: &'a str,
    /// The unionid the app reported, if any.
    pub union_id: Option<&'a str>,
    /// The user of the identity `(app, open_id)`, when the identity exists already.
    pub current: Option<CurrentUser<'a>>,
    /// The owner of `union_id` in `scope`.
    pub owner: Owner<'a>,
}

/// The user a new or moved identity goes to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    Existing(UserId),
    /// A new user holding the reported unionid (found instead, if a concurrent writer made it).
    NewWithUnion,
    /// A new user without a unionid, the identity's alone.
    NewWithoutUnion,
}

/// What to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// The owner of the unionid must be looked up first; then decide again.
    LookUpOwner,
    /// First sighting of `(app, open_id)`: insert the identity under `Target`.
    NewIdentity(Target),
    /// Nothing to change in who is who: refresh `last_seen_at` (and the follow state).
    Touch,
    /// The identity's user takes the unionid (nobody in the scope had it).
    Adopt,
    /// The identity's user (no unionid of its own) is the owner's person: merge the whole user
    /// into the owner.
    Merge { into: UserId },
    /// The identity's user holds another unionid (or lives in another scope): move only this
    /// identity.
    Conflict(Target),
}

/// Decides how to link a sighting. Pure: no I/O, no clock.
pub fn decide(k: &Known<'_>) -> Decision {
    let Some(union_id) = k.union_id else {
        return match &k.current {
            Some(_) => Decision::Touch,
            None => Decision::NewIdentity(Target::NewWithoutUnion),
        };
    };
    if let Some(current) = &k.current
        && current.scope == k.scope
        && current.union_id == Some(union_id)
    {
        return Decision::Touch;
    }
    let owner = match k.owner {
        Owner::Unknown => return Decision::LookUpOwner,
        Owner::Nobody => None,
        Owner::User(id) => Some(id),
    };
    let target = || match owner {
        Some(id) => Target::Existing(id.clone()),
        None => Target::NewWithUnion,
    };
    let Some(current) = &k.current else {
        return Decision::NewIdentity(target());
    };
    if current.scope != k.scope || current.union_id.is_some() {
        return Decision::Conflict(target());
    }
    match owner {
        None => Decision::Adopt,
        Some(id) if id == current.id => Decision::Touch,
        Some(id) => Decision::Merge { into: id.clone() },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCOPE: &str = "op:acme";

    #[test]
    fn every_case_of_the_linking_rules() {
        let me = UserId::new("u-me");
        let them = UserId::new("u-them");
        let mine = |union_id: Option<&'static str>| {
            Some(CurrentUser {
                id: &me,
                scope: SCOPE,
                union_id,
            })
        };
        let elsewhere = Some(CurrentUser {
            id: &me,
            scope: "app:wx0000000000000000",
            union_id: None,
        });
        struct Case<'a> {
            name: &'a str,
            union_id: Option<&'a str>,
            current: Option<CurrentUser<'a>>,
            owner: Owner<'a>,
            want: Decision,
        }
        let cases = [
            Case {
                name: "first sighting without unionid: a user of its own",
                union_id: None,
                current: None,
                owner: Owner::Unknown,
                want: Decision::NewIdentity(Target::NewWithoutUnion),
            },
            Case {
                name: "first sighting with unionid: look up its owner first",
                union_id: Some("U"),
                current: None,
                owner: Owner::Unknown,
                want: Decision::LookUpOwner,
            },
            Case {
                name: "first sighting, unionid unowned: a new user with it",
                union_id: Some("U"),
                current: None,
                owner: Owner::Nobody,
                want: Decision::NewIdentity(Target::NewWithUnion),
            },
            Case {
                name: "first sighting, unionid owned: join the owner",
                union_id: Some("U"),
                current: None,
                owner: Owner::User(&them),
                want: Decision::NewIdentity(Target::Existing(them.clone())),
            },
            Case {
                name: "known identity, no unionid reported: touch",
                union_id: None,
                current: mine(None),
                owner: Owner::Unknown,
                want: Decision::Touch,
            },
            Case {
                name: "known identity, no unionid reported, user has one: touch",
                union_id: None,
                current: mine(Some("U")),
                owner: Owner::Unknown,
                want: Decision::Touch,
            },
            Case {
                name: "returning user with the same unionid: touch without a lookup",
                union_id: Some("U"),
                current: mine(Some("U")),
                owner: Owner::Unknown,
                want: Decision::Touch,
            },
            Case {
                name: "unionid turns up for a user without one: look up its owner",
                union_id: Some("U"),
                current: mine(None),
                owner: Owner::Unknown,
                want: Decision::LookUpOwner,
            },
            Case {
                name: "unionid turns up, nobody has it: adopt",
                union_id: Some("U"),
                current: mine(None),
                owner: Owner::Nobody,
                want: Decision::Adopt,
            },
            Case {
                name: "unionid turns up, another user has it: merge into that user",
                union_id: Some("U"),
                current: mine(None),
                owner: Owner::User(&them),
                want: Decision::Merge { into: them.clone() },
            },
            Case {
                name: "unionid turns up and the owner is the identity's own user: touch",
                union_id: Some("U"),
                current: mine(None),
                owner: Owner::User(&me),
                want: Decision::Touch,
            },
            Case {
                name: "a different unionid, owned: only this identity moves to the owner",
                union_id: Some("V"),
                current: mine(Some("U")),
                owner: Owner::User(&them),
                want: Decision::Conflict(Target::Existing(them.clone())),
            },
            Case {
                name: "a different unionid, unowned: only this identity moves to a new user",
                union_id: Some("V"),
                current: mine(Some("U")),
                owner: Owner::Nobody,
                want: Decision::Conflict(Target::NewWithUnion),
            },
            Case {
                name: "a different unionid needs its owner looked up",
                union_id: Some("V"),
                current: mine(Some("U")),
                owner: Owner::Unknown,
                want: Decision::LookUpOwner,
            },
            Case {
                name: "the app moved to an open platform: the identity joins that scope's owner",
                union_id: Some("U"),
                current: elsewhere.clone(),
                owner: Owner::User(&them),
                want: Decision::Conflict(Target::Existing(them.clone())),
            },
            Case {
                name: "the app moved to an open platform, unionid unowned there: a new user",
                union_id: Some("U"),
                current: elsewhere,
                owner: Owner::Nobody,
                want: Decision::Conflict(Target::NewWithUnion),
            },
        ];
        for c in cases {
            let known = Known {
                scope: SCOPE,
                union_id: c.union_id,
                current: c.current,
                owner: c.owner,
            };
            assert_eq!(decide(&known), c.want, "{}", c.name);
        }
    }

    #[test]
    fn an_owner_lookup_is_only_asked_for_when_it_can_change_the_answer() {
        // With the owner known, `decide` never asks again: no loop in the store.
        let me = UserId::new("u-me");
        for union_id in [None, Some("U")] {
            for current_union in [None, Some("U"), Some("V")] {
                for with_current in [false, true] {
                    for owner in [Owner::Nobody, Owner::User(&me)] {
                        let known = Known {
                            scope: SCOPE,
                            union_id,
                            current: with_current.then_some(CurrentUser {
                                id: &me,
                                scope: SCOPE,
                                union_id: current_union,
                            }),
                            owner,
                        };
                        assert_ne!(decide(&known), Decision::LookUpOwner, "{known:?}");
                    }
                }
            }
        }
    }
}
