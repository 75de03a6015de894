//! Schema migrations for wxunion, applied by `wxunion migrate` and at the start of `wxunion serve`.
//!
//! One file per migration, never edited after it has shipped: a deployed database only ever
//! moves forward through this list.

pub use sea_orm_migration::prelude::*;

mod m20261125_000001_identity_tables;
mod m20261125_000002_jobs;
mod m20261125_000003_jobs_pending_index;
mod m20261127_000001_events;
mod m20261127_000002_unionid_lookup_and_session_owner;
mod m20261127_000003_phone_numbers;
mod m20261127_000004_follower_syncs;
mod m20261127_000005_jobs_dead_index;
mod m20261127_000006_jobs_done_index;

/// `CREATE [UNIQUE] INDEX IF NOT EXISTS name ON table (columns)`: every plain index wxunion
/// has. The partial indexes on `jobs` (`ix_jobs_pending`, `ix_jobs_dead`,
/// `ix_jobs_done_finished_at`) are written out in SQL in their migrations, so that their
/// predicates read exactly as the statements that must match them (`status = 'done'`).
pub(crate) fn index<T, C>(name: &str, table: T, columns: &[C], unique: bool) -> IndexCreateStatement
where
    T: IntoIden,
    C: IntoIden + Clone,
{
    let mut index = Index::create();
    index.name(name).table(table).if_not_exists();
    for c in columns {
        index.col(c.clone());
    }
    if unique {
        index.unique();
    }
    index.to_owned()
}

/// The ordered list of every migration wxunion knows.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261125_000001_identity_tables::Migration),
            Box::new(m20261125_000002_jobs::Migration),
            Box::new(m20261125_000003_jobs_pending_index::Migration),
            Box::new(m20261127_000001_events::Migration),
            Box::new(m20261127_000002_unionid_lookup_and_session_owner::Migration),
            Box::new(m20261127_000003_phone_numbers::Migration),
            Box::new(m20261127_000004_follower_syncs::Migration),
            Box::new(m20261127_000005_jobs_dead_index::Migration),
            Box::new(m20261127_000006_jobs_done_index::Migration),
        ]
    }
}
