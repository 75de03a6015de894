//! The phone number a user shared from a mini program (`bindPhoneNumber`): at most one per
//! user, the latest bound. Stored in the clear (see the README's "Phone numbers").

use sea_orm::entity::prelude::*;

/// A phone row, keyed by the user it belongs to.
#[derive(Clone, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "phone_numbers")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub user_id: String,
    /// The mini program the number was shared through.
    pub app_id: String,
    pub phone_number: String,
    pub pure_phone_number: String,
    pub country_code: String,
    pub bound_at: DateTimeUtc,
}

/// No digits in `Debug`: a phone row must never reach a log.
impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("phone_numbers::Model")
            .field("user_id", &self.user_id)
            .field("app_id", &self.app_id)
            .field("bound_at", &self.bound_at)
            .finish_non_exhaustive()
    }
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
