//! Everything that speaks WeChat's wire format: the HTTP API client, the shared access-token
//! manager, the message crypto and the callback XML.

pub mod client;
pub mod crypto;
pub mod envelope;
pub mod message;
pub mod token;

pub use client::{CallError, CodeSession, OAuthSession, PhoneInfo, UserInfo, WechatClient};
pub use token::AccessTokens;
