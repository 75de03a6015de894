//! A partial index on done jobs by when they finished, so that pruning them reads only the
//! rows it deletes.
//!
//! Done jobs are kept a day as dedupe records and pruned every ten minutes by every instance
//! (`DELETE … WHERE status = 'done' AND finished_at < …`). Without an index on `finished_at`
//! each prune read the whole table, a day of callbacks, to delete ten minutes of them. Only
//! a job's last update (to done) adds an entry here: the callback's insert (pending) does not.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared(
                "CREATE INDEX IF NOT EXISTS ix_jobs_done_finished_at ON jobs (finished_at) \
                 WHERE status = 'done'",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared("DROP INDEX IF EXISTS ix_jobs_done_finished_at")
            .await?;
        Ok(())
    }
}
