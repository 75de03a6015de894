//! Ending sessions: `logout` (the calling session) and `revokeSessions` (every session of a
//! user). Sessions are read from the database on every request, never cached, so an ended
//! session is refused by every instance from the next request on.

use crate::domain::{Result, Session, UserId};
use crate::store;

use super::Service;

impl Service {
    /// `logout`: ends the calling session; whether it still existed (two concurrent logouts
    /// with one token: one of them finds it gone).
    pub async fn logout(&self, session: &Session) -> Result<bool> {
        self.bounded(store::sessions::end(&self.db, &session.token_hash))
            .await
    }

    /// `revokeSessions`: ends every live session of the user an id names now (an id merged
    /// away names the survivor; a merge moved the merged user's sessions to it, so they are
    /// ended too) and records `SESSIONS_REVOKED`. Returns how many were ended; 0 for an
    /// unknown id.
    pub async fn revoke_sessions(&self, user_id: &UserId) -> Result<u64> {
        let ended = self
            .bounded_transaction({
                let (db, user_id, now) = (self.db.clone(), user_id.clone(), self.clock.now());
                async move { store::sessions::revoke_all(&db, &user_id, now).await }
            })
            .await?;
        if let Some(n) = ended {
            tracing::info!(user_id = %user_id, ended = n, "sessions revoked");
        }
        Ok(ended.unwrap_or(0))
    }
}
