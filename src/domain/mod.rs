//! The domain core: the product's values and rules, as plain types and pure functions. It
//! imports no other module of the crate; every other module builds on it.

pub mod app;
pub mod client_addr;
pub mod error;
pub mod event;
pub mod follower_sync;
pub mod ids;
pub mod job;
pub mod link;
pub mod rate;
pub mod throttle;
pub mod unionid;
pub mod user;

pub use app::{AppConfig, AppKind, TokenEndpoint};
pub use error::{Error, Result};
pub use event::{Event, EventKind, EventPage, NewEvent};
pub use ids::{AppId, LoginCode, OpenId, UnionId, UserId};
pub use unionid::{UnionIdStatus, UnionLookup};
pub use user::{Identity, PhoneNumber, Session, User};
