//! Looking people up from wxunion's own records (no WeChat call): `userById`, `identity`,
//! and the user and unionid status of an identity.

use crate::domain::unionid::union_id_status;
use crate::domain::{AppId, AppKind, Identity, OpenId, UnionIdStatus, User, UserId};
use crate::domain::{Error, Result};
use crate::store;

use super::Service;

impl Service {
    /// `userById`: the user of an id; an id merged away answers the user it was merged into
    /// (following `merged_into`, bounded and cycle-safe). `None` for an id never seen.
    pub async fn user_by_id(&self, id: &UserId) -> Result<Option<User>> {
        self.bounded(store::users::live(&self.db, id)).await
    }

    /// `identity(appId, openId)`: the identity as recorded, `None` when never seen. The app
    /// must be configured (of any kind): UNKNOWN_APP otherwise.
    pub async fn identity(&self, app_id: &AppId, open_id: &OpenId) -> Result<Option<Identity>> {
        self.app(app_id, &AppKind::ALL)?;
        self.bounded(store::users::identity(
            &self.db,
            app_id.as_str(),
            open_id.as_str(),
        ))
        .await
    }

    /// The user an identity belongs to (identities always belong to a live user: a merge
    /// moves them).
    pub async fn user_of(&self, identity: &Identity) -> Result<User> {
        self.bounded(store::users::live(&self.db, &identity.user_id))
            .await?
            .ok_or_else(|| {
                Error::internal(anyhow::anyhow!(
                    "identity {} belongs to a missing user {}",
                    identity.id,
                    identity.user_id
                ))
            })
    }

    /// Whether an identity's unionid is known, being looked up, or not to be had. An app no
    /// longer configured counts as one without an open platform.
    pub fn union_id_status(&self, identity: &Identity) -> UnionIdStatus {
        let bound = self
            .config
            .app(identity.app_id.as_str())
            .is_some_and(|a| a.open_platform.is_some());
        union_id_status(identity.union_id.is_some(), bound, identity.union_lookup)
    }
}
