//! Whether an identity's unionid is known, being looked up, or not to be had.

/// Where the lookup of an identity's unionid stands, stored with the identity while its
/// unionid is unknown.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum UnionLookup {
    /// A lookup is queued, retrying, or failed and parked (a retry can still succeed).
    Pending,
    /// WeChat answered for this openid without a unionid.
    Answered,
}

impl UnionLookup {
    pub const ALL: [UnionLookup; 2] = [UnionLookup::Pending, UnionLookup::Answered];

    /// The stable name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            UnionLookup::Pending => "pending",
            UnionLookup::Answered => "answered",
        }
    }

    pub fn parse(s: &str) -> Option<UnionLookup> {
        UnionLookup::ALL.into_iter().find(|l| l.as_str() == s)
    }
}

/// An identity's unionid, as clients see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum UnionIdStatus {
    /// The unionid is set.
    Known,
    /// A lookup is queued or retrying (or failed and was parked: it can still be retried).
    Pending,
    /// The app has no open platform, or WeChat gave none.
    NotEligible,
}

impl UnionIdStatus {
    pub const ALL: [UnionIdStatus; 3] = [
        UnionIdStatus::Known,
        UnionIdStatus::Pending,
        UnionIdStatus::NotEligible,
    ];

    /// The name used in logs and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            UnionIdStatus::Known => "known",
            UnionIdStatus::Pending => "pending",
            UnionIdStatus::NotEligible => "not_eligible",
        }
    }
}

/// The status of an identity's unionid: known when set; otherwise not eligible when the app
/// has no open platform or WeChat answered without one; pending while a lookup is queued,
/// retrying or parked. An identity never looked up (a login whose answer had no unionid
/// stores `Answered`, so this is only a row older than the column) counts as not eligible
/// when its app is bound, since nothing is on the way.
pub fn union_id_status(
    has_union_id: bool,
    app_has_open_platform: bool,
    lookup: Option<UnionLookup>,
) -> UnionIdStatus {
    if has_union_id {
        return UnionIdStatus::Known;
    }
    if !app_has_open_platform {
        return UnionIdStatus::NotEligible;
    }
    match lookup {
        Some(UnionLookup::Pending) => UnionIdStatus::Pending,
        Some(UnionLookup::Answered) | None => UnionIdStatus::NotEligible,
    }
}

/// The lookup state to store after a link: none once the unionid is known, else what this
/// sighting says, else what was stored.
pub fn lookup_after(
    has_union_id: bool,
    reported: Option<UnionLookup>,
    stored: Option<UnionLookup>,
) -> Option<UnionLookup> {
    if has_union_id {
        None
    } else {
        reported.or(stored)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use UnionIdStatus::*;

    #[test]
    fn lookups_round_trip_through_their_stored_names() {
        for l in UnionLookup::ALL {
            assert_eq!(UnionLookup::parse(l.as_str()), Some(l));
        }
        assert_eq!(UnionLookup::parse("known"), None);
    }

    #[test]
    fn every_status() {
        let p = Some(UnionLookup::Pending);
        let a = Some(UnionLookup::Answered);
        // (has unionid, app has open platform, lookup, status)
        let cases = [
            (true, true, None, Known),
            (true, true, p, Known),
            (true, true, a, Known),
            (true, false, None, Known),
            (false, false, None, NotEligible),
            (false, false, p, NotEligible),
            (false, false, a, NotEligible),
            (false, true, p, Pending),
            (false, true, a, NotEligible),
            (false, true, None, NotEligible),
        ];
        for (has, bound, lookup, want) in cases {
            assert_eq!(
                union_id_status(has, bound, lookup),
                want,
                "{has} {bound} {lookup:?}"
            );
        }
    }

    #[test]
    fn what_a_link_stores() {
        let p = Some(UnionLookup::Pending);
        let a = Some(UnionLookup::Answered);
        // (has unionid after the link, reported by the sighting, stored before, stored after)
        let cases = [
            (true, p, p, None),
            (true, a, None, None),
            (false, p, None, p),
            (false, p, a, p),
            (false, a, p, a),
            (false, None, p, p),
            (false, None, a, a),
            (false, None, None, None),
        ];
        for (has, reported, stored, want) in cases {
            assert_eq!(
                lookup_after(has, reported, stored),
                want,
                "{has} {reported:?} {stored:?}"
            );
        }
    }
}
