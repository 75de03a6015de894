//! The official-account callback pipeline after the HTTP layer has verified a message:
//! [`inbox`] records it durably (group commit, deduplicated by key) before WeChat gets its
//! `success`; [`worker`] then does the slow part (recording the identity, asking `user/info`
//! for the unionid) from the jobs table, so a slow WeChat or a killed process loses nothing.

pub mod inbox;
pub mod worker;

use serde::{Deserialize, Serialize};

/// The job kind for callback events.
pub const KIND: &str = "callback_event";

/// What a verified callback asks the worker to do, stored as the job's JSON payload.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct EventJob {
    pub open_id: String,
    /// WeChat's `CreateTime`: orders follow/unfollow even when jobs run out of order.
    pub create_time: i64,
    /// `Some(true)` for subscribe, `Some(false)` for unsubscribe, `None` for anything else.
    pub subscribed: Option<bool>,
    pub msg_type: String,
    pub event: Option<String>,
}
