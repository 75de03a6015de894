//! Schema migrations for wxunion, applied by `wxunion migrate` and at the start of `wxunion serve`.
//!
//! One file per migration, never edited after it has shipped: a deployed database only ever
//! moves forward through this list.

pub use sea_orm_migration::prelude::*;

mod m20261125_000001_identity_tables;
mod m20261125_000002_jobs;

/// The ordered list of every migration wxunion knows.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261125_000001_identity_tables::Migration),
            Box::new(m20261125_000002_jobs::Migration),
        ]
    }
}
