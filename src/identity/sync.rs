//! The follower backfill behind `wxunion sync-followers`: backfill an official account's existing followers.
//!
//! Followers who never send an event are invisible to the callback; this walks
//! `cgi-bin/user/get` page by page and resolves them 100 at a time with
//! `cgi-bin/user/info/batchget`, linking each to the user of its unionid.

use crate::domain::{AppId, AppKind, Error, OpenId};

use super::Service;

/// How far a follower sync has come, reported as it goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    /// The account has this many followers (from the first page).
    Started {
        total: u64,
    },
    /// One more follower linked.
    Linked,
    Finished {
        linked: u64,
    },
}

/// Walks every follower page and links each follower; returns how many were linked.
pub async fn sync(
    service: &Service,
    app_id: &AppId,
    mut progress: impl FnMut(Progress),
) -> Result<u64, Error> {
    let app = service.app(app_id, &[AppKind::OfficialAccount])?;
    let mut next = String::new();
    let mut started = false;
    let mut linked = 0u64;
    loop {
        let page = service
            .tokens
            .with_token(app, |token| {
                let wechat = service.wechat.clone();
                let next = next.clone();
                async move { wechat.user_get(&token, &next).await }
            })
            .await?;
        if !started {
            started = true;
            progress(Progress::Started {
                total: page.total.max(0) as u64,
            });
        }
        let openids = page.data.map(|d| d.openid).unwrap_or_default();
        if openids.is_empty() {
            break;
        }
        for chunk in openids.chunks(100) {
            let infos = service
                .tokens
                .with_token(app, |token| {
                    let wechat = service.wechat.clone();
                    let chunk = chunk.to_vec();
                    async move { wechat.user_info_batch(&token, &chunk).await }
                })
                .await?;
            let now = service.clock.now().timestamp();
            for info in infos {
                let open_id = OpenId::parse(&info.openid)?;
                let union_id =
                    super::service::parse_union_id(info.unionid.as_deref(), "user/info/batchget")?;
                service
                    .link(
                        app,
                        &open_id,
                        union_id.as_ref(),
                        Some((info.subscribe == 1, now)),
                    )
                    .await?;
                linked += 1;
                progress(Progress::Linked);
            }
        }
        if page.next_openid.is_empty() || page.count < 10_000 {
            break;
        }
        next = page.next_openid;
    }
    progress(Progress::Finished { linked });
    Ok(linked)
}
