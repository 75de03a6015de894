//! The domain core: the product's rules as pure functions over plain values. It imports no
//! other module of the crate; everything else builds on it.

pub mod job;
pub mod link;

pub use link::UserId;
