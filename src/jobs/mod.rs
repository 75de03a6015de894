//! Background work. Today one kind: the official-account callback pipeline after the route
//! (`http::wechat_callback`) has had `wechat::envelope` verify and open a message:
//! [`inbox`] records it durably (group commit, deduplicated by key) before WeChat gets its
//! `success`; [`worker`] then does the slow part (recording the identity, asking `user/info`
//! for the unionid) from the jobs table, so a slow WeChat or a killed process loses nothing.

pub mod inbox;
pub mod worker;

use serde::{Deserialize, Serialize};

use crate::domain::AppConfig;
use crate::wechat::message::{Kind, Message};

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

impl EventJob {
    /// The work a verified message asks for.
    pub fn from_message(msg: &Message) -> EventJob {
        EventJob {
            open_id: msg.from_user_name.clone(),
            create_time: msg.create_time,
            subscribed: follow_state(&msg.kind()),
            msg_type: msg.msg_type.clone(),
            event: msg.event.clone(),
        }
    }

    /// The passive reply the account sends back: its welcome text, to new followers only.
    pub fn reply<'a>(&self, app: &'a AppConfig) -> Option<&'a str> {
        match self.subscribed {
            Some(true) => app.subscribe_reply.as_deref(),
            _ => None,
        }
    }
}

/// What a message says about following the account: `subscribe` and `unsubscribe` set it,
/// everything else (a scan, a message) leaves it alone.
fn follow_state(kind: &Kind) -> Option<bool> {
    match kind {
        Kind::Subscribe { .. } => Some(true),
        Kind::Unsubscribe => Some(false),
        Kind::Scan { .. } | Kind::Other => None,
    }
}
