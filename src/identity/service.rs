//! The use cases: log in with a code, resolve an official-account openid, look people up.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use base64::Engine;
use chrono::{DateTime, Utc};
use rand::RngCore;
use sea_orm::DatabaseConnection;

use crate::cache::Cache;
use crate::clock::SharedClock;
use crate::config::{Config, sha256_hex};
use crate::domain::{AppConfig, AppKind};
use crate::domain::{
    AppId, Identity, LoginCode, OpenId, Session, UnionId, UnionLookup, User, UserId,
};
use crate::domain::{Error, Result};
use crate::store::{
    self,
    group_commit::{GroupCommit, Limits},
    links::{Linked, Sighting},
    sessions::{NewSession, ReturningLogin},
};
use crate::wechat::{AccessTokens, WechatClient};

/// The most returning logins one statement writes. Under the benchmark's 32 connections a
/// group holds about a dozen; the bound keeps one statement's locks and size modest.
const RETURNING_LOGINS_PER_COMMIT: usize = 64;
/// Returning-login statements in flight at once, each on a connection of the writer's own.
const RETURNING_LOGIN_FLUSHES: usize = 2;

/// Returning logins to write, each answered with its user and identity when the
/// one-statement path took it.
type ReturningLogins = GroupCommit<ReturningLogin, Option<(User, Identity)>>;

/// The result of a successful `loginWithCode`. The session token is shown once, here.
#[derive(Debug, Clone)]
pub struct Login {
    pub session_token: String,
    pub expires_at: DateTime<Utc>,
    pub is_new_user: bool,
    pub user: User,
    pub identity: Identity,
}

/// Everything the use cases need, cheap to clone.
#[derive(Clone)]
///
/// Its infrastructure (database, cache, WeChat client) is private to `identity`: transports
/// and workers call the use cases, never the storage under them.
pub struct Service {
    pub(super) config: Arc<Config>,
    pub(super) db: DatabaseConnection,
    pub(super) cache: Cache,
    pub(super) wechat: WechatClient,
    pub(super) tokens: AccessTokens,
    pub(super) clock: SharedClock,
    /// Per-app runs of logins without a unionid, to spot an app unbound from its platform.
    pub(super) unbound: Arc<super::unbound::UnboundWatch>,
    /// What request paths last saw of the database (see `deadline`).
    pub(super) db_health: Arc<super::deadline::DbHealth>,
    /// The login rate limits' in-process fallback (see `login_guard`).
    pub(super) login_guard: Arc<super::login_guard::LoginGuard>,
    /// Returning users' logins, written in groups (see `returning_logins`); started by the
    /// first login, on the runtime serving it.
    returning_logins: Arc<OnceLock<ReturningLogins>>,
}

/// Whether the service's database and cache answer, for `/readyz`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Readiness {
    pub database: bool,
    pub cache: bool,
    pub cache_kind: &'static str,
}

/// Connects the database (applying pending migrations) and the cache a configuration names.
pub async fn connect_storage(config: &Config) -> anyhow::Result<(DatabaseConnection, Cache)> {
    use anyhow::Context as _;
    let db = store::connect_bounded(
        &config.database_url,
        config.database_max_connections,
        super::deadline::pool_timeout(config.database_timeout_ms),
    )
    .await
    .context("cannot connect to the database (database_url)")?;
    store::migrate(&db)
        .await
        .context("cannot apply migrations")?;
    let cache = Cache::connect_bounded(
        config.redis_url.as_deref(),
        &config.redis_prefix,
        Duration::from_millis(config.redis_timeout_ms),
    )
    .await
    .context("cannot connect to Redis (redis_url)")?;
    Ok((db, cache))
}

impl Service {
    /// Connects the database (applying pending migrations), the cache and the WeChat client.
    pub async fn connect(config: Config, clock: SharedClock) -> anyhow::Result<Service> {
        let (db, cache) = connect_storage(&config).await?;
        let wechat_api_base = config.wechat_api_base.clone();
        Service::new(config, db, cache, clock, &wechat_api_base)
    }

    /// The use cases over an open database and cache, calling WeChat at `wechat_api_base`
    /// (the configured one, or sandbox mode's simulator).
    pub fn new(
        config: Config,
        db: DatabaseConnection,
        cache: Cache,
        clock: SharedClock,
        wechat_api_base: &str,
    ) -> anyhow::Result<Service> {
        let wechat = WechatClient::new(
            wechat_api_base,
            Duration::from_millis(config.wechat_timeout_ms),
        )?;
        let tokens = AccessTokens::new(
            cache.clone(),
            wechat.clone(),
            config.max_forced_token_refreshes_per_hour,
        );
        Ok(Service {
            config: Arc::new(config),
            db,
            cache,
            wechat,
            tokens,
            clock,
            unbound: Arc::new(super::unbound::UnboundWatch::default()),
            db_health: Arc::default(),
            login_guard: Arc::default(),
            returning_logins: Arc::default(),
        })
    }

    /// The validated configuration the service runs on.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Now, by the service's clock.
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// Pings the database and the cache at once, each bounded by `timeout` (and the database
    /// also by `database_timeout_ms`).
    pub async fn readiness(&self, timeout: Duration) -> Readiness {
        let (db, cache) = tokio::join!(
            tokio::time::timeout(timeout, self.bounded(store::ping(&self.db))),
            tokio::time::timeout(timeout, self.cache.ping()),
        );
        Readiness {
            database: matches!(db, Ok(Ok(()))),
            cache: matches!(cache, Ok(Ok(()))),
            cache_kind: self.cache.kind(),
        }
    }

    /// The configured app of the expected kinds, or UNKNOWN_APP.
    pub fn app(&self, app_id: &AppId, kinds: &[AppKind]) -> Result<&AppConfig> {
        self.config
            .app(app_id.as_str())
            .filter(|a| kinds.contains(&a.kind))
            .ok_or_else(|| Error::UnknownApp(app_id.to_string()))
    }

    /// `loginWithCode`: exchange the code (`jscode2session` for mini programs, the OAuth
    /// `sns/oauth2/access_token` for official-account web pages, websites and mobile apps),
    /// link the identity, open a session. A mini program's session key is kept in the cache
    /// (for later decryption of user data) and never leaves the server.
    #[tracing::instrument(skip_all, fields(app_id = %app_id))]
    pub async fn login_with_code(&self, app_id: &AppId, code: &LoginCode) -> Result<Login> {
        let app = self.app(app_id, &AppKind::ALL)?;
        let (open_id, union_id, session_key) = match app.kind {
            AppKind::MiniProgram => {
                let session = self.wechat.code_to_session(app, code).await?;
                let open_id = parse_open_id(&session.openid, "jscode2session")?;
                let union_id = parse_union_id(session.unionid.as_deref(), "jscode2session")?;
                (open_id, union_id, Some(session.session_key))
            }
            AppKind::OfficialAccount | AppKind::Website | AppKind::Mobile => {
                let session = self.wechat.oauth_access_token(app, code).await?;
                let open_id = parse_open_id(&session.openid, "oauth2/access_token")?;
                let union_id = parse_union_id(session.unionid.as_deref(), "oauth2/access_token")?;
                (open_id, union_id, None)
            }
        };
        self.unbound.login(app, union_id.is_some());
        // The session key goes to the cache while the database does its part; a cache
        // failure never fails the login (WeChat has used the code by now).
        let keep_key = async {
            if let Some(key) = &session_key {
                self.keep_session_key(app, &open_id, key).await;
            }
        };
        let (_, linked) = tokio::join!(
            keep_key,
            self.bounded_transaction({
                let (service, app, open_id) = (self.clone(), app.clone(), open_id.clone());
                let app_id = app_id.clone();
                async move {
                    service
                        .link_and_open(&app, &app_id, &open_id, union_id.as_ref())
                        .await
                }
            })
        );
        let (linked, token, expires_at) = linked?;
        metrics::counter!("wxunion_logins_total", "new_user" => linked.is_new_user.to_string())
            .increment(1);
        Ok(Login {
            session_token: token,
            expires_at,
            is_new_user: linked.is_new_user,
            user: linked.user,
            identity: linked.identity,
        })
    }

    /// The group commit of returning logins (`store::sessions::login_returning_batch`): under
    /// load, concurrent returning logins share one statement and one commit instead of a
    /// commit each, which is most of what a login costs PostgreSQL.
    fn returning_logins(&self) -> &ReturningLogins {
        self.returning_logins.get_or_init(|| {
            let writer = Arc::new(store::sessions::ReturningLoginWriter::new(
                self.db.clone(),
                &self.config.database_url,
                RETURNING_LOGIN_FLUSHES as u32,
                super::deadline::pool_timeout(self.config.database_timeout_ms),
            ));
            let limits = Limits {
                batch_size_metric: "wxunion_login_batch_size",
                flush_seconds_metric: "wxunion_login_flush_seconds",
                max_batch: RETURNING_LOGINS_PER_COMMIT,
                max_flushes: RETURNING_LOGIN_FLUSHES,
                queue: 4096,
                deadline: self.database_timeout() * super::deadline::AFTER_WECHAT,
                // Logins write from a task of their own (`bounded_transaction`), so a login
                // alone writes itself instead of waking the collector and a flush task.
                inline_when_idle: true,
            };
            GroupCommit::start("returning logins", limits, move |logins| {
                let writer = writer.clone();
                async move { writer.write(&logins).await }
            })
        })
    }

    /// Links a login's identity and opens its session: in one statement, shared with the other
    /// returning logins in flight, for someone already known here with nothing new to link
    /// ([`Service::returning_logins`]), else the general way, a link and then the session.
    /// Returns the session's token and expiry.
    async fn link_and_open(
        &self,
        app: &AppConfig,
        app_id: &AppId,
        open_id: &OpenId,
        union_id: Option<&UnionId>,
    ) -> Result<(Linked, String, DateTime<Utc>)> {
        let token = new_session_token();
        let token_hash = sha256_hex(&token);
        let ttl = chrono::Duration::seconds(self.config.session_ttl_seconds as i64);
        let now = self.clock.now();
        let returning = self
            .returning_logins()
            .submit(ReturningLogin {
                app_id: app_id.clone(),
                scope: app.scope(),
                open_id: open_id.as_str().to_owned(),
                union_id: union_id.map(|u| u.as_str().to_owned()),
                token_hash: token_hash.clone(),
                now,
                expires_at: now + ttl,
            })
            .await?;
        if let Some((user, identity)) = returning {
            let linked = Linked {
                user,
                identity,
                is_new_user: false,
            };
            return Ok((linked, token, now + ttl));
        }
        // Boxed: the general way's database futures are most of this future's size, and every
        // login carries this future (moved into the login's task, and async-graphql boxes the
        // resolver's future around it); only the logins that take this way pay for the box.
        let (linked, expires_at) =
            Box::pin(self.link_then_open(app, app_id, open_id, union_id, &token_hash, ttl)).await?;
        Ok((linked, token, expires_at))
    }

    /// The general way of [`Service::link_and_open`]: a link transaction, then the session's.
    /// Returns what was linked and the session's expiry.
    async fn link_then_open(
        &self,
        app: &AppConfig,
        app_id: &AppId,
        open_id: &OpenId,
        union_id: Option<&UnionId>,
        token_hash: &str,
        ttl: chrono::Duration,
    ) -> Result<(Linked, DateTime<Utc>)> {
        let mut linked = self.link(app, open_id, union_id, None).await?;
        // After the link, so that LOGIN is never older than the events the link recorded.
        let now = self.clock.now();
        let owner = store::sessions::open(
            &self.db,
            &NewSession {
                token_hash,
                user_id: &linked.user.id,
                identity_id: &linked.identity.id,
                app_id,
                open_id: open_id.as_str(),
                now,
                expires_at: now + ttl,
            },
        )
        .await?;
        if owner != linked.user.id {
            // A merge moved the user between the link and the session: answer the survivor.
            if let Some(user) = store::users::live(&self.db, &owner).await? {
                linked.user = user;
            }
        }
        Ok((linked, now + ttl))
    }

    /// `resolveOpenId`: asks `user/info` for an official-account follower's unionid and links
    /// it. An account bound to no open platform has none: the identity is kept without one.
    #[tracing::instrument(skip_all, fields(app_id = %app_id))]
    pub async fn resolve_open_id(
        &self,
        app_id: &AppId,
        open_id: &OpenId,
    ) -> Result<(User, Identity)> {
        let app = self.app(app_id, &[AppKind::OfficialAccount])?;
        let info = self
            .tokens
            .with_token(app, |token| {
                let wechat = self.wechat.clone();
                let open_id = open_id.as_str().to_owned();
                async move { wechat.user_info(&token, &open_id).await }
            })
            .await?;
        let union_id = parse_union_id(info.unionid.as_deref(), "user/info")?;
        let now = self.clock.now().timestamp();
        let linked = self
            .bounded_transaction({
                let (service, app, open_id) = (self.clone(), app.clone(), open_id.clone());
                let subscription = Some((info.subscribe == 1, now));
                async move {
                    service
                        .link(&app, &open_id, union_id.as_ref(), subscription)
                        .await
                }
            })
            .await?;
        Ok((linked.user, linked.identity))
    }

    /// Records what a callback event proves (the openid exists, its follow state) and, when
    /// the unionid is still unknown and the account is bound to an open platform, resolves it.
    pub async fn record_event(
        &self,
        app: &AppConfig,
        open_id: &OpenId,
        event_time: i64,
        subscription: Option<bool>,
    ) -> Result<()> {
        // With an open platform the unionid is looked up right after (in this job, retried
        // with it): PENDING until that lookup succeeds or WeChat answers without one.
        let lookup = app.open_platform.as_ref().map(|_| UnionLookup::Pending);
        let linked = self
            .link_with(
                app,
                open_id,
                None,
                subscription.map(|on| (on, event_time)),
                lookup,
            )
            .await?;
        if linked.identity.union_id.is_none() && app.open_platform.is_some() {
            let app_id = AppId::parse(&app.app_id)?;
            self.resolve_open_id(&app_id, open_id).await?;
        }
        Ok(())
    }

    /// Links what WeChat just answered about a person (a login, `user/info`), as of now:
    /// without a unionid in the answer, WeChat gave none.
    pub(super) async fn link(
        &self,
        app: &AppConfig,
        open_id: &OpenId,
        union_id: Option<&UnionId>,
        subscription: Option<(bool, i64)>,
    ) -> Result<Linked> {
        self.link_with(
            app,
            open_id,
            union_id,
            subscription,
            Some(UnionLookup::Answered),
        )
        .await
    }

    /// Links a sighting, saying where the lookup of its unionid stands.
    pub(super) async fn link_with(
        &self,
        app: &AppConfig,
        open_id: &OpenId,
        union_id: Option<&UnionId>,
        subscription: Option<(bool, i64)>,
        union_lookup: Option<UnionLookup>,
    ) -> Result<Linked> {
        Ok(store::links::link(
            &self.db,
            &Sighting {
                app,
                open_id: open_id.as_str(),
                union_id: union_id.map(UnionId::as_str),
                seen_at: self.clock.now(),
                subscription,
                union_lookup,
            },
        )
        .await?)
    }

    /// `user(unionId)`.
    pub async fn user_by_union_id(&self, union_id: &UnionId) -> Result<Option<User>> {
        self.bounded(store::users::by_union_id(&self.db, union_id))
            .await
    }

    /// The session of a token, if it is live: looked up in the database on every call (no
    /// cache), so an ended or revoked session is unknown to every instance at once. Its user
    /// is the live one (a session opened just before a merge answers the survivor).
    pub async fn session_user(&self, token: &str) -> Result<Option<Session>> {
        let token_hash = sha256_hex(token);
        let lookup = async {
            let Some(user_id) =
                store::sessions::user_of(&self.db, &token_hash, self.clock.now()).await?
            else {
                return Ok(None);
            };
            store::users::live(&self.db, &user_id).await
        };
        Ok(self
            .bounded(lookup)
            .await?
            .map(|user| Session { user, token_hash }))
    }

    /// A user's identities.
    pub async fn identities(&self, user_id: &UserId) -> Result<Vec<Identity>> {
        self.bounded(store::users::identities_of(&self.db, user_id))
            .await
    }
}

/// An openid as WeChat returned it; a malformed one is WeChat's fault, not the caller's.
fn parse_open_id(raw: &str, api: &str) -> Result<OpenId> {
    OpenId::parse(raw).map_err(|_| upstream_shape(&format!("{api} returned a malformed openid")))
}

/// A unionid as WeChat returned it; a malformed one is WeChat's fault, not the caller's.
pub(super) fn parse_union_id(raw: Option<&str>, api: &str) -> Result<Option<UnionId>> {
    raw.map(|u| {
        UnionId::parse(u)
            .map_err(|_| upstream_shape(&format!("{api} returned a malformed unionid")))
    })
    .transpose()
}

fn upstream_shape(detail: &str) -> Error {
    Error::Upstream {
        errcode: None,
        errmsg: None,
        detail: detail.to_owned(),
    }
}

/// 256 random bits, URL-safe: unguessable, and only its SHA-256 is stored.
fn new_session_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!(
        "wxs_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::SystemClock;

    /// A request's future is moved, and async-graphql boxes a resolver's future once per
    /// selected field, the root mutation's as large as its largest resolver's: each login
    /// copied 9,344 bytes of it (`resolveOpenId`'s 7,880) before the database work was boxed
    /// as it is handed over; 1,504 and 1,528 bytes since (a debug build). The group commits
    /// box each batch's future: the returning logins' carried the opening of their pool
    /// (7,528 bytes) until that was boxed apart.
    #[tokio::test]
    async fn request_futures_do_not_carry_their_database_work() {
        let env = vec![(
            "WXUNION_DATABASE_URL".to_owned(),
            "sqlite::memory:".to_owned(),
        )];
        let config = Config::load(None, env).unwrap();
        let db = store::connect(&config.database_url, 1).await.unwrap();
        let cache = Cache::connect(None, "t:").await.unwrap();
        let app_id = AppId::parse(&config.apps[0].app_id).unwrap();
        let s = Service::new(
            config,
            db,
            cache,
            Arc::new(SystemClock),
            "http://127.0.0.1:1",
        )
        .unwrap();
        let code = LoginCode::parse("code").unwrap();
        let open_id = OpenId::parse("oABCDEFGHIJKLMNOPQRSTUVWXYZ1").unwrap();
        let user = UserId::new("u1");
        let writer = store::sessions::ReturningLoginWriter::new(
            s.db.clone(),
            "sqlite::memory:",
            1,
            std::time::Duration::from_secs(1),
        );
        let no_jobs: [store::jobs::NewJob; 0] = [];
        let sizes = [
            (
                "loginWithCode",
                size_of_val(&s.login_with_code_from(&app_id, &code, None)),
            ),
            (
                "resolveOpenId",
                size_of_val(&s.resolve_open_id(&app_id, &open_id)),
            ),
            ("revokeSessions", size_of_val(&s.revoke_sessions(&user))),
            ("User.events", size_of_val(&s.events(&user, None, None))),
            ("User.identities", size_of_val(&s.identities(&user))),
            ("User.phoneNumber", size_of_val(&s.phone_number(&user))),
            // What the group commits move whole for every batch.
            ("a returning logins' batch", size_of_val(&writer.write(&[]))),
            (
                "a callback inbox's batch",
                size_of_val(&store::jobs::insert_batch(&s.db, no_jobs.iter())),
            ),
        ];
        for (what, size) in sizes {
            assert!(size <= 4096, "{what}: its future takes {size} bytes");
        }
    }
}
