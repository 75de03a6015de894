//! The audit trail as the use cases see it: a user's events, page by page, and the prune of
//! what is past the retention period (and of expired sessions) that every instance runs.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::domain::event::page_size;
use crate::domain::unionid::{UnionIdStatus, union_id_status};
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
        let mut events = self
            .bounded(store::events::page(&self.db, user_id, before, limit + 1))
            .await?;
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

/// How often each instance recounts identities by unionid status for `/metrics`.
pub const IDENTITY_COUNT_EVERY: Duration = Duration::from_secs(60);

impl Service {
    /// Identities per configured app and unionid status (every status of every app, zero
    /// included, so a gauge that drops to zero is seen to).
    pub async fn identities_by_union_status(&self) -> Result<Vec<(String, UnionIdStatus, i64)>> {
        let mut counts: BTreeMap<(String, UnionIdStatus), i64> = BTreeMap::new();
        for app in &self.config().apps {
            for status in UnionIdStatus::ALL {
                counts.insert((app.app_id.clone(), status), 0);
            }
        }
        for (app_id, known, lookup, n) in store::users::count_by_union_state(&self.db).await? {
            let has_platform = self
                .config()
                .app(&app_id)
                .is_some_and(|a| a.open_platform.is_some());
            let status = union_id_status(known, has_platform, lookup);
            *counts.entry((app_id, status)).or_insert(0) += n;
        }
        Ok(counts.into_iter().map(|((a, s), n)| (a, s, n)).collect())
    }
}

/// Publishes `wxunion_identities{app_id, unionid_status}` every [`IDENTITY_COUNT_EVERY`].
pub async fn report_identities_forever(service: Service) {
    loop {
        match service.identities_by_union_status().await {
            Ok(counts) => {
                for (app_id, status, n) in counts {
                    metrics::gauge!("wxunion_identities", "app_id" => app_id, "unionid_status" => status.as_str())
                        .set(n as f64);
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not count identities"),
        }
        tokio::time::sleep(IDENTITY_COUNT_EVERY).await;
    }
}
