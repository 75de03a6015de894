//! `bindPhoneNumber` and `User.phoneNumber`: the number a person shares from a mini program
//! (`<button open-type="getPhoneNumber">`), fetched with the app's shared access token. No
//! phone number is ever logged.

use crate::domain::{AppId, AppKind, Error, LoginCode, PhoneNumber, Result, Session, User, UserId};
use crate::store::{self, phones::NewPhone};

use super::Service;

impl Service {
    /// `bindPhoneNumber`: exchanges the phone code (`wxa/business/getuserphonenumber`, with
    /// the app's shared access token) and binds the number to the session's user, recording
    /// `PHONE_BOUND` in the same transaction. The session must have been opened with a mini
    /// program still configured as one (UNKNOWN_APP otherwise); an invalid, expired or used
    /// code is INVALID_CODE.
    pub async fn bind_phone_number(&self, session: &Session, code: &LoginCode) -> Result<User> {
        let Some((app_id, open_id)) = self
            .bounded(store::phones::session_origin(&self.db, &session.token_hash))
            .await?
        else {
            // Ended between the authentication of this request and now.
            return Err(Error::Unauthenticated);
        };
        let app_id = AppId::parse(&app_id).map_err(Error::internal)?;
        let app = self.app(&app_id, &[AppKind::MiniProgram])?;
        let info = self
            .tokens
            .with_token(app, |token| {
                let wechat = self.wechat.clone();
                let code = code.as_str().to_owned();
                async move { wechat.user_phone_number(&token, &code).await }
            })
            .await?;
        let bound = self
            .bounded_transaction({
                let (db, user_id, now) =
                    (self.db.clone(), session.user.id.clone(), self.clock.now());
                let app_id = app_id.clone();
                async move {
                    store::phones::bind(
                        &db,
                        &user_id,
                        &NewPhone {
                            app_id: app_id.as_str(),
                            open_id: &open_id,
                            phone_number: &info.phone_number,
                            pure_phone_number: &info.pure_phone_number,
                            country_code: &info.country_code,
                            now,
                        },
                    )
                    .await
                }
            })
            .await?;
        let Some((owner, _)) = bound else {
            return Err(Error::Unauthenticated);
        };
        tracing::info!(user_id = %owner, app_id = %app_id, "phone number bound");
        metrics::counter!("wxunion_phone_bindings_total").increment(1);
        self.bounded_after_wechat(store::users::live(&self.db, &owner))
            .await?
            .ok_or(Error::Unauthenticated)
    }

    /// The number bound to a user, if any. Who may read it is the caller's check.
    pub async fn phone_number(&self, user_id: &UserId) -> Result<Option<PhoneNumber>> {
        self.bounded(store::phones::of(&self.db, user_id)).await
    }
}
