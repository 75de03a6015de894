//! The audit trail as the use cases see it: a user's events, page by page, and the prune of
//! what is past the retention period (and of expired sessions) that every instance runs.

use std::time::Duration;

use crate::domain::event::page_size;
use crate::domain::{EventPage, Result, UserId};
use crate::store;

use super::Service;

/// How often each instance prunes expired sessions and events past their retention. Both
/// only cost storage while they wait (an expired session is refused anyway), so a coarse
/// period is enough; deletes are idempotent, so instances need no coordination.
pub const PRUNE_EVERY: Duration = Duration::from_secs(600);

/// Events deleted per statement while pruning.
const PRUNE_BATCH: u64 = 5_000;

/// What one prune removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pruned {
    pub sessions: u64,
    pub events: u64,
}

impl Service {
    /// A user's events, newest first: at most `first` (0 to 100, 20 when absent; BAD_REQUEST
    /// beyond), older than the event `before` when given. Paging by the event id, which
    /// increases in the order events are recorded, never repeats or skips an event while new
    /// ones arrive (they are newer than every page already read).
    pub async fn events(
        &self,
        user_id: &UserId,
        first: Option<i32>,
        before: Option<i64>,
    ) -> Result<EventPage> {
        let limit = page_size(first)?;
        let mut events = store::events::page(&self.db, user_id, before, limit + 1).await?;
        let has_next_page = events.len() as u64 > limit;
        events.truncate(limit as usize);
        Ok(EventPage {
            events,
            has_next_page,
        })
    }

    /// Deletes expired sessions and events older than `event_retention_days`.
    pub async fn prune(&self) -> Result<Pruned> {
        let now = self.clock.now();
        let sessions = store::sessions::prune(&self.db, now).await?;
        let before = now - chrono::Duration::days(self.config.event_retention_days as i64);
        let mut events = 0;
        loop {
            let n = store::events::prune(&self.db, before, PRUNE_BATCH).await?;
            events += n;
            if n < PRUNE_BATCH {
                break;
            }
        }
        Ok(Pruned { sessions, events })
    }
}

/// Prunes every [`PRUNE_EVERY`] until the task is dropped (the first time at start).
pub async fn prune_forever(service: Service) {
    loop {
        match service.prune().await {
            Ok(Pruned {
                sessions: 0,
                events: 0,
            }) => {}
            Ok(p) => tracing::info!(
                sessions = p.sessions,
                events = p.events,
                "pruned expired sessions and old events"
            ),
            Err(e) => tracing::warn!(error = %e, "could not prune sessions and events"),
        }
        tokio::time::sleep(PRUNE_EVERY).await;
    }
}
