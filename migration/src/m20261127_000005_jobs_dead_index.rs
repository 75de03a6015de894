//! A partial index on dead jobs, so that the `wxunion_jobs` gauges count them without
//! reading the table.
//!
//! The gauges used to count every job by status in one `GROUP BY`, every 15 s on every
//! instance: a scan of the whole table, whose done rows are kept a day as dedupe records
//! (21–283 ms of PostgreSQL at 400,000 jobs, and growing with a day's callbacks). Pending and
//! running jobs are counted through `ix_jobs_pending`, dead ones through this index (dead
//! jobs are rare and stay until an operator deals with them), done ones are estimated.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared(
                "CREATE INDEX IF NOT EXISTS ix_jobs_dead ON jobs (id) WHERE status = 'dead'",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared("DROP INDEX IF EXISTS ix_jobs_dead")
            .await?;
        Ok(())
    }
}
