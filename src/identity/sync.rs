//! `wxunion sync-followers`: backfill an official account's existing followers.
//!
//! Followers who never send an event are invisible to the callback; this walks
//! `cgi-bin/user/get` page by page and resolves them 100 at a time with
//! `cgi-bin/user/info/batchget`, linking each to the user of its unionid.

use std::sync::Arc;

use indicatif::{ProgressBar, ProgressStyle};

use crate::domain::{AppId, OpenId};

use super::Service;
use crate::clock::SystemClock;
use crate::config::Config;
use crate::domain::AppKind;
use crate::domain::Error;

/// Runs the backfill for one official account, with a progress bar on a terminal.
pub async fn run(config: Config, app_id: &str) -> anyhow::Result<()> {
    let service = Service::connect(config, Arc::new(SystemClock)).await?;
    let app_id = AppId::parse(app_id)?;
    let linked = sync(&service, &app_id, |total| {
        let bar = ProgressBar::new(total);
        bar.set_style(
            ProgressStyle::with_template("{bar:40} {pos}/{len} followers ({eta} left)")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar
    })
    .await?;
    println!("resolved {linked} followers of {app_id}");
    Ok(())
}

/// Walks every follower page and links each follower; returns how many were linked.
pub async fn sync(
    service: &Service,
    app_id: &AppId,
    progress: impl FnOnce(u64) -> ProgressBar,
) -> Result<u64, Error> {
    let app = service.app(app_id, &[AppKind::OfficialAccount])?;
    let mut next = String::new();
    let mut bar = None;
    let mut progress = Some(progress);
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
        if bar.is_none()
            && let Some(make) = progress.take()
        {
            bar = Some(make(page.total.max(0) as u64));
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
                if let Some(b) = &bar {
                    b.inc(1);
                }
            }
        }
        if page.next_openid.is_empty() || page.count < 10_000 {
            break;
        }
        next = page.next_openid;
    }
    if let Some(b) = bar {
        b.finish();
    }
    Ok(linked)
}
