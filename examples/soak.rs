//! The load generator of `bench/soak.sh`: mixed traffic against running wxunion instances and
//! the WeChat simulator for a fixed time, then a reconciliation against the database.
//!
//! Traffic, open loop at fixed rates, spread over the instances at random:
//! - `loginWithCode` from mini programs: new people, returning people (same app), and people
//!   already known through another app (joined by unionid); codes minted at the simulator's
//!   `POST /sim/code`. A login whose instance fails (refused, reset, timeout, 5xx) is sent
//!   again to the other instance with the same code, or with a fresh code when the lost attempt
//!   had used it already. One in five sessions is used once for `me`.
//! - `resolveOpenId` of followers with the API key.
//! - Official-account callbacks, delivered by the simulator exactly as WeChat does (`POST
//!   /sim/follow`, `/sim/message`: safe mode, 5 s per attempt, 3 attempts); an event whose three
//!   attempts all fail is handed to the other instance (a load balancer), same event. Subscribes
//!   of new people and of people who logged in, and text messages from followers. A share of
//!   the acknowledged events is sent again later on purpose (WeChat's duplicates).
//!
//! Afterwards it waits for the job queue to drain and checks, in the database: every
//! acknowledged callback's job is done (none lost) and none is dead; every follower has exactly
//! one `subscribed` event (none applied twice); one live user per person (no two users with one
//! unionid, no identity left on a merged-away user, no person split across users, every
//! follower's unionid resolved), and as many live users as distinct people. Exits non-zero
//! when any check fails.
//!
//! Usage: see `bench/soak.sh`, which starts everything and passes these arguments.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use rand::Rng;
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement};
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use wxunion::wechat::message;

#[derive(Parser, Clone)]
struct Args {
    /// Base URLs of the wxunion instances, comma-separated.
    #[arg(long, value_delimiter = ',')]
    instances: Vec<String>,
    /// Base URL of the simulator.
    #[arg(long)]
    sim: String,
    /// PostgreSQL URL of the instances' database, for the reconciliation.
    #[arg(long)]
    database_url: String,
    #[arg(long)]
    api_key: String,
    /// The official account (safe mode, bound to the mini programs' open platform).
    #[arg(long)]
    oa: String,
    /// Mini programs, comma-separated.
    #[arg(long, value_delimiter = ',')]
    mps: Vec<String>,
    /// Seconds of load.
    #[arg(long, default_value_t = 600)]
    seconds: u64,
    #[arg(long, default_value_t = 60.0)]
    login_rate: f64,
    #[arg(long, default_value_t = 30.0)]
    resolve_rate: f64,
    #[arg(long, default_value_t = 100.0)]
    callback_rate: f64,
    /// Share of acknowledged callbacks sent again on purpose, in percent.
    #[arg(long, default_value_t = 5)]
    duplicate_percent: u32,
    /// Longest wait for the job queue to drain after the load.
    #[arg(long, default_value_t = 300)]
    drain_seconds: u64,
    /// Failed operations (after the retries) allowed, in percent of all operations.
    #[arg(long, default_value_t = 0.1)]
    max_failed_percent: f64,
    /// Prefix of the simulated people's names (distinct per run).
    #[arg(long, default_value = "soak")]
    people: String,
}

/// The kinds of operation, each with its own rate and counters.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Op {
    Login,
    Resolve,
    Callback,
}

const OPS: [Op; 3] = [Op::Login, Op::Resolve, Op::Callback];

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Login => "login",
            Op::Resolve => "resolve",
            Op::Callback => "callback",
        }
    }
}

/// Counters of one kind of operation.
#[derive(Default)]
struct Counters {
    ok: AtomicU64,
    /// Gave up after the retries (or answered wrongly).
    failed: AtomicU64,
    /// Sent again to the other instance after a failure.
    rerouted: AtomicU64,
    /// Not started because too many were in flight.
    skipped: AtomicU64,
    latencies_us: Mutex<Vec<u32>>,
}

/// One callback event as sent: its dedupe key and whether wxunion acknowledged it.
struct Sent {
    key: String,
    open_id: String,
    subscribe: bool,
    acked: bool,
}

#[derive(Clone)]
struct Follower {
    person: String,
    open_id: String,
    union_id: String,
}

#[derive(Default)]
struct People {
    next: u64,
    /// (person, mini-program index) of successful logins.
    logged_in: Vec<(String, usize)>,
    /// Logged in, not following the account yet.
    not_following: Vec<String>,
    /// Acknowledged follows.
    followers: Vec<Follower>,
    /// Everyone any request was made for.
    attempted: HashSet<String>,
    /// Everyone wxunion answered for successfully at least once.
    confirmed: HashSet<String>,
}

struct Soak {
    args: Args,
    http: reqwest::Client,
    counters: HashMap<Op, Counters>,
    people: Mutex<People>,
    sent: Mutex<Vec<Sent>>,
    /// Duplicates sent on purpose, and how many of them were acknowledged.
    duplicates_sent: AtomicU64,
    duplicates_acked: AtomicU64,
    /// Logins that needed a fresh code because a lost attempt had used the first.
    relogins: AtomicU64,
    errors: Mutex<HashMap<String, u64>>,
    next_msg_id: AtomicU64,
}

const LOGIN: &str = "mutation($appId: String!, $code: String!) {
  loginWithCode(appId: $appId, code: $code) { sessionToken isNewUser user { id unionId } }
}";
const ME: &str = "{ me { id unionId } }";
const RESOLVE: &str = "mutation($appId: String!, $openId: String!) {
  resolveOpenId(appId: $appId, openId: $openId) { user { id unionId } }
}";

/// Why an attempt failed: worth another instance, or final.
enum Failure {
    Transport(String),
    Answer(String),
}

impl Soak {
    fn counters(&self, op: Op) -> &Counters {
        &self.counters[&op]
    }

    fn error(&self, what: String) {
        *self
            .errors
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(what)
            .or_default() += 1;
    }

    fn people(&self) -> std::sync::MutexGuard<'_, People> {
        self.people.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn instance(&self, avoid: Option<usize>) -> usize {
        let n = self.args.instances.len();
        match avoid {
            Some(i) if n > 1 => (i + rand::rng().random_range(1..n)) % n,
            _ => rand::rng().random_range(0..n),
        }
    }

    async fn post(&self, url: &str, body: &Value, bearer: Option<&str>) -> Result<Value, Failure> {
        let mut req = self
            .http
            .post(url)
            .json(body)
            .timeout(Duration::from_secs(30));
        if let Some(token) = bearer {
            req = req.bearer_auth(token);
        }
        let resp = req.send().await.map_err(|e| {
            Failure::Transport(if e.is_timeout() {
                "timeout".to_owned()
            } else if e.is_connect() {
                "connection refused".to_owned()
            } else {
                "connection lost".to_owned()
            })
        })?;
        let status = resp.status();
        if !status.is_success() {
            return Err(Failure::Transport(format!("status {}", status.as_u16())));
        }
        resp.json()
            .await
            .map_err(|_| Failure::Transport("unreadable body".to_owned()))
    }

    async fn graphql(
        &self,
        instance: usize,
        query: &str,
        variables: Value,
        bearer: Option<&str>,
    ) -> Result<Value, Failure> {
        let url = format!("{}/graphql", self.args.instances[instance]);
        let v = self
            .post(
                &url,
                &json!({ "query": query, "variables": variables }),
                bearer,
            )
            .await?;
        match v["errors"][0]["extensions"]["code"].as_str() {
            None if v["errors"].is_null() => Ok(v["data"].clone()),
            code => Err(Failure::Answer(code.unwrap_or("no code").to_owned())),
        }
    }

    async fn sim(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.args.sim);
        let resp = self
            .http
            .post(&url)
            .json(&body)
            .timeout(Duration::from_secs(60))
            .send()
            .await
            .with_context(|| format!("simulator {path}"))?;
        if !resp.status().is_success() {
            bail!("simulator {path}: status {}", resp.status());
        }
        Ok(resp.json().await?)
    }

    fn new_person(&self) -> String {
        let mut p = self.people();
        p.next += 1;
        let name = format!("{}-{}", self.args.people, p.next);
        p.attempted.insert(name.clone());
        name
    }

    /// One login (new, returning, or through another app).
    async fn login(&self) -> anyhow::Result<()> {
        let mps = self.args.mps.len();
        let roll = rand::rng().random_range(0..100);
        let picked = {
            let p = self.people();
            let mut rng = rand::rng();
            if roll < 40 || p.logged_in.is_empty() {
                None
            } else if roll < 80 {
                Some(p.logged_in[rng.random_range(0..p.logged_in.len())].clone())
            } else if !p.followers.is_empty() && roll < 90 {
                let f = &p.followers[rng.random_range(0..p.followers.len())];
                Some((f.person.clone(), rng.random_range(0..mps)))
            } else {
                let (person, mp) = &p.logged_in[rng.random_range(0..p.logged_in.len())];
                Some((person.clone(), (mp + 1) % mps))
            }
        };
        let (person, mp) = match picked {
            Some(pm) => pm,
            None => (self.new_person(), rand::rng().random_range(0..mps)),
        };
        let app_id = &self.args.mps[mp];
        let mut minted = self
            .sim("/sim/code", json!({ "app_id": app_id, "person": person }))
            .await?;
        let union_id = minted["unionid"].as_str().unwrap_or_default().to_owned();
        let started = Instant::now();
        let mut instance = self.instance(None);
        for attempt in 0..4 {
            if attempt > 0 {
                self.counters(Op::Login)
                    .rerouted
                    .fetch_add(1, Ordering::Relaxed);
                instance = self.instance(Some(instance));
            }
            let code = minted["code"].as_str().unwrap_or_default().to_owned();
            let vars = json!({ "appId": app_id, "code": code });
            match self.graphql(instance, LOGIN, vars, None).await {
                Ok(data) => {
                    let login = &data["loginWithCode"];
                    if login["user"]["unionId"] != union_id.as_str() {
                        self.error(format!("login answered another unionid: {login}"));
                        self.done(Op::Login, started, false);
                        return Ok(());
                    }
                    {
                        let mut p = self.people();
                        p.confirmed.insert(person.clone());
                        if login["isNewUser"] == true {
                            p.logged_in.push((person.clone(), mp));
                            p.not_following.push(person.clone());
                        } else if roll >= 80 {
                            p.logged_in.push((person.clone(), mp));
                        }
                    }
                    let token = login["sessionToken"].as_str().unwrap_or_default();
                    if rand::rng().random_range(0..5) == 0 {
                        match self.graphql(instance, ME, json!({}), Some(token)).await {
                            Ok(me) if me["me"]["unionId"] == union_id.as_str() => {}
                            Ok(me) => self.error(format!("me answered {me}")),
                            Err(Failure::Transport(e)) => self.error(format!("me: {e}")),
                            Err(Failure::Answer(e)) => self.error(format!("me: {e}")),
                        }
                    }
                    self.done(Op::Login, started, true);
                    return Ok(());
                }
                Err(Failure::Transport(e)) => self.error(format!("login: {e}")),
                Err(Failure::Answer(code)) if code == "INVALID_CODE" && attempt > 0 => {
                    // The lost attempt had exchanged the code: a mini program calls
                    // wx.login again.
                    self.relogins.fetch_add(1, Ordering::Relaxed);
                    minted = self
                        .sim("/sim/code", json!({ "app_id": app_id, "person": person }))
                        .await?;
                }
                Err(Failure::Answer(code)) => {
                    self.error(format!("login: {code}"));
                    self.done(Op::Login, started, false);
                    return Ok(());
                }
            }
        }
        self.done(Op::Login, started, false);
        Ok(())
    }

    /// `resolveOpenId` of a follower.
    async fn resolve(&self) -> anyhow::Result<()> {
        let picked = {
            let p = self.people();
            (!p.followers.is_empty())
                .then(|| p.followers[rand::rng().random_range(0..p.followers.len())].clone())
        };
        let Some(follower) = picked else {
            return Ok(());
        };
        let started = Instant::now();
        let mut instance = self.instance(None);
        for attempt in 0..3 {
            if attempt > 0 {
                self.counters(Op::Resolve)
                    .rerouted
                    .fetch_add(1, Ordering::Relaxed);
                instance = self.instance(Some(instance));
            }
            let vars = json!({ "appId": self.args.oa, "openId": follower.open_id });
            match self
                .graphql(instance, RESOLVE, vars, Some(&self.args.api_key))
                .await
            {
                Ok(data) => {
                    let union = &data["resolveOpenId"]["user"]["unionId"];
                    if union != follower.union_id.as_str() {
                        self.error(format!("resolve of {} answered {data}", follower.person));
                        self.done(Op::Resolve, started, false);
                        return Ok(());
                    }
                    self.done(Op::Resolve, started, true);
                    return Ok(());
                }
                Err(Failure::Transport(e)) => self.error(format!("resolve: {e}")),
                Err(Failure::Answer(code)) => {
                    self.error(format!("resolve: {code}"));
                    self.done(Op::Resolve, started, false);
                    return Ok(());
                }
            }
        }
        self.done(Op::Resolve, started, false);
        Ok(())
    }

    /// One callback event: a subscribe (new person, or one who logged in) or a text message
    /// from a follower.
    async fn callback(&self) -> anyhow::Result<()> {
        let roll = rand::rng().random_range(0..100);
        let (person, subscribe) = {
            let mut p = self.people();
            let mut rng = rand::rng();
            if roll < 30 && !p.followers.is_empty() {
                let f = &p.followers[rng.random_range(0..p.followers.len())];
                (Some(f.person.clone()), false)
            } else if roll < 50 && !p.not_following.is_empty() {
                let i = rng.random_range(0..p.not_following.len());
                (Some(p.not_following.swap_remove(i)), true)
            } else {
                (None, true)
            }
        };
        let person = person.unwrap_or_else(|| self.new_person());
        let create_time = chrono::Utc::now().timestamp();
        let msg_id = (!subscribe).then(|| self.next_msg_id.fetch_add(1, Ordering::Relaxed));
        let started = Instant::now();
        let mut instance = self.instance(None);
        let mut report = Value::Null;
        for attempt in 0..2 {
            if attempt > 0 {
                self.counters(Op::Callback)
                    .rerouted
                    .fetch_add(1, Ordering::Relaxed);
                instance = self.instance(Some(instance));
            }
            report = self.deliver(&person, create_time, msg_id, instance).await?;
            if report["delivered"] == true {
                break;
            }
            let attempts: Vec<String> = report["attempts"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|a| match &a["error"] {
                    Value::String(e) => e.clone(),
                    _ => format!("status {}", a["status"]),
                })
                .collect();
            self.error(format!("callback not delivered ({})", attempts.join(", ")));
        }
        let acked = report["delivered"] == true;
        let open_id = report["openid"].as_str().unwrap_or_default().to_owned();
        let key = dedupe_key(&self.args.oa, &open_id, create_time, msg_id)?;
        self.sent
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Sent {
                key,
                open_id: open_id.clone(),
                subscribe,
                acked,
            });
        if acked {
            let mut p = self.people();
            p.confirmed.insert(person.clone());
            if subscribe {
                p.followers.push(Follower {
                    person: person.clone(),
                    open_id,
                    union_id: report["unionid"].as_str().unwrap_or_default().to_owned(),
                });
            }
        }
        self.done(Op::Callback, started, acked);
        if acked && rand::rng().random_range(0..100) < self.args.duplicate_percent {
            // WeChat sends the same event again now and then (its answer was lost): the same
            // CreateTime / MsgId, to whichever instance.
            let delay = Duration::from_millis(rand::rng().random_range(200..3000));
            tokio::time::sleep(delay).await;
            self.duplicates_sent.fetch_add(1, Ordering::Relaxed);
            let again = self
                .deliver(&person, create_time, msg_id, self.instance(None))
                .await?;
            if again["delivered"] == true {
                self.duplicates_acked.fetch_add(1, Ordering::Relaxed);
            }
        }
        Ok(())
    }

    async fn deliver(
        &self,
        person: &str,
        create_time: i64,
        msg_id: Option<u64>,
        instance: usize,
    ) -> anyhow::Result<Value> {
        let target = &self.args.instances[instance];
        let mut body = json!({ "app_id": self.args.oa, "person": person, "target": target,
            "create_time": create_time });
        match msg_id {
            Some(id) => {
                body["msg_id"] = json!(id);
                body["content"] = json!("soak");
                self.sim("/sim/message", body).await
            }
            None => self.sim("/sim/follow", body).await,
        }
    }

    fn done(&self, op: Op, started: Instant, ok: bool) {
        let c = self.counters(op);
        if ok {
            c.ok.fetch_add(1, Ordering::Relaxed);
            let us = u32::try_from(started.elapsed().as_micros()).unwrap_or(u32::MAX);
            c.latencies_us
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(us);
        } else {
            c.failed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The dedupe key wxunion gives the event the simulator sent: derived from the same message.
fn dedupe_key(
    app_id: &str,
    open_id: &str,
    create_time: i64,
    msg_id: Option<u64>,
) -> anyhow::Result<String> {
    let xml = match msg_id {
        Some(id) => message::text_xml("gh_soak", open_id, create_time, "soak", id),
        None => message::event_xml("gh_soak", open_id, create_time, "subscribe", None),
    };
    Ok(message::parse_message(&xml)
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .dedupe_key(app_id))
}

/// Runs one kind of operation at `rate` per second until `until`.
async fn drive(soak: Arc<Soak>, op: Op, rate: f64, until: Instant) {
    if rate <= 0.0 {
        return;
    }
    const IN_FLIGHT: u32 = 512;
    let slots = Arc::new(Semaphore::new(IN_FLIGHT as usize));
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    while Instant::now() < until {
        tick.tick().await;
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            soak.counters(op).skipped.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        let soak = soak.clone();
        tokio::spawn(async move {
            let outcome = match op {
                Op::Login => soak.login().await,
                Op::Resolve => soak.resolve().await,
                Op::Callback => soak.callback().await,
            };
            if let Err(e) = outcome {
                soak.error(format!("{}: {e:#}", op.name()));
                soak.counters(op).failed.fetch_add(1, Ordering::Relaxed);
            }
            drop(slot);
        });
    }
    // Wait for the operations still in flight.
    let _ = slots.acquire_many(IN_FLIGHT).await;
}

/// Prints a line every ten seconds: operations done and failed in the last ten seconds.
async fn progress(soak: Arc<Soak>, started: Instant) {
    let mut last: HashMap<Op, (u64, u64)> = HashMap::new();
    let mut tick = tokio::time::interval(Duration::from_secs(10));
    tick.tick().await;
    loop {
        tick.tick().await;
        let mut line = format!("[soak] t={:>4}s", started.elapsed().as_secs());
        for op in OPS {
            let c = soak.counters(op);
            let now = (
                c.ok.load(Ordering::Relaxed),
                c.failed.load(Ordering::Relaxed),
            );
            let before = last.insert(op, now).unwrap_or_default();
            line.push_str(&format!(
                "  {} {}/s ok{}",
                op.name(),
                (now.0 - before.0) / 10,
                match now.1 - before.1 {
                    0 => String::new(),
                    n => format!(" ({n} failed)"),
                }
            ));
        }
        eprintln!("{line}");
    }
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    f64::from(sorted[i]) / 1000.0
}

async fn query(db: &DatabaseConnection, sql: &str) -> anyhow::Result<Vec<sea_orm::QueryResult>> {
    Ok(db
        .query_all_raw(Statement::from_string(DbBackend::Postgres, sql.to_owned()))
        .await?)
}

async fn scalar(db: &DatabaseConnection, sql: &str) -> anyhow::Result<i64> {
    let rows = query(db, sql).await?;
    let row = rows.first().context("no row")?;
    Ok(row.try_get_by_index(0)?)
}

/// Checks the database against what was sent; returns the failed checks.
async fn reconcile(soak: &Soak) -> anyhow::Result<Vec<String>> {
    let db = wxunion::store::connect(&soak.args.database_url, 2).await?;
    let drain_started = Instant::now();
    loop {
        let open = scalar(
            &db,
            "SELECT COUNT(*) FROM jobs WHERE status NOT IN ('done', 'dead')",
        )
        .await?;
        if open == 0 {
            break;
        }
        if drain_started.elapsed() > Duration::from_secs(soak.args.drain_seconds) {
            bail!("{open} jobs still open after {} s", soak.args.drain_seconds);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    println!(
        "queue drained {:.1} s after the load ended",
        drain_started.elapsed().as_secs_f64()
    );
    let mut failed = Vec::new();
    let mut check = |ok: bool, what: String| {
        println!("  [{}] {what}", if ok { "ok" } else { "FAIL" });
        if !ok {
            failed.push(what);
        }
    };

    let done: HashSet<String> = query(&db, "SELECT dedupe_key FROM jobs WHERE status = 'done'")
        .await?
        .into_iter()
        .map(|r| r.try_get_by_index(0))
        .collect::<Result<_, _>>()?;
    let dead = scalar(&db, "SELECT COUNT(*) FROM jobs WHERE status = 'dead'").await?;
    let jobs = scalar(&db, "SELECT COUNT(*) FROM jobs").await?;
    let subscribed: HashMap<String, i64> = query(
        &db,
        &format!(
            "SELECT open_id, COUNT(*) FROM events WHERE kind = 'subscribed' AND app_id = '{}' \
             GROUP BY open_id",
            soak.args.oa
        ),
    )
    .await?
    .into_iter()
    .map(|r| Ok((r.try_get_by_index(0)?, r.try_get_by_index(1)?)))
    .collect::<Result<_, sea_orm::DbErr>>()?;

    // What was sent, counted with the lock held only here (no await inside).
    let (acked, all_keys, lost, followers, not_once) = {
        let sent = soak.sent.lock().unwrap_or_else(|e| e.into_inner());
        let acked: HashSet<&str> = sent
            .iter()
            .filter(|s| s.acked)
            .map(|s| s.key.as_str())
            .collect();
        let all_keys: HashSet<&str> = sent.iter().map(|s| s.key.as_str()).collect();
        let lost: Vec<String> = acked
            .iter()
            .filter(|k| !done.contains(**k))
            .map(|k| (*k).to_owned())
            .collect();
        let followers: HashSet<&str> = sent
            .iter()
            .filter(|s| s.acked && s.subscribe)
            .map(|s| s.open_id.as_str())
            .collect();
        let not_once = followers
            .iter()
            .filter(|o| subscribed.get(**o).copied().unwrap_or(0) != 1)
            .count();
        (acked.len(), all_keys.len(), lost, followers.len(), not_once)
    };
    let twice = subscribed.values().filter(|n| **n > 1).count();
    println!(
        "callbacks: {} events sent ({} acknowledged, {} never), {} duplicates sent on purpose \
         ({} acknowledged); jobs {jobs} (done {}, dead {dead})",
        all_keys,
        acked,
        all_keys - acked,
        soak.duplicates_sent.load(Ordering::Relaxed),
        soak.duplicates_acked.load(Ordering::Relaxed),
        done.len(),
    );
    check(
        lost.is_empty(),
        format!(
            "no lost event: {} of {} acknowledged events applied (job done){}",
            acked - lost.len(),
            acked,
            match lost.first() {
                Some(k) => format!(", e.g. {k} not done"),
                None => String::new(),
            }
        ),
    );
    check(dead == 0, format!("no dead job: {dead}"));
    check(
        jobs as usize <= all_keys,
        format!("each event recorded at most once: {jobs} jobs for {all_keys} distinct events"),
    );
    check(
        not_once == 0 && twice == 0,
        format!(
            "exactly one SUBSCRIBED per follower: {followers} followers, {not_once} without \
             exactly one, {twice} openids with more than one"
        ),
    );

    let duplicated_unions = scalar(
        &db,
        "SELECT COUNT(*) FROM (SELECT scope, union_id FROM users WHERE union_id IS NOT NULL \
         GROUP BY scope, union_id HAVING COUNT(*) > 1) d",
    )
    .await?;
    let live = scalar(&db, "SELECT COUNT(*) FROM users WHERE merged_into IS NULL").await?;
    let live_without_union = scalar(
        &db,
        "SELECT COUNT(*) FROM users WHERE merged_into IS NULL AND union_id IS NULL",
    )
    .await?;
    let merged = scalar(
        &db,
        "SELECT COUNT(*) FROM users WHERE merged_into IS NOT NULL",
    )
    .await?;
    let on_merged = scalar(
        &db,
        "SELECT COUNT(*) FROM identities i JOIN users u ON u.id = i.user_id \
         WHERE u.merged_into IS NOT NULL",
    )
    .await?;
    let split = scalar(
        &db,
        "SELECT COUNT(*) FROM (SELECT union_id FROM identities WHERE union_id IS NOT NULL \
         GROUP BY union_id HAVING COUNT(DISTINCT user_id) > 1) s",
    )
    .await?;
    let unresolved = scalar(
        &db,
        "SELECT COUNT(*) FROM identities WHERE union_id IS NULL",
    )
    .await?;
    let people = scalar(
        &db,
        "SELECT COUNT(DISTINCT union_id) FROM identities WHERE union_id IS NOT NULL",
    )
    .await?;
    let identities = scalar(&db, "SELECT COUNT(*) FROM identities").await?;
    let (attempted, confirmed) = {
        let p = soak.people();
        (p.attempted.len() as i64, p.confirmed.len() as i64)
    };
    println!(
        "people: {attempted} named in requests, {confirmed} answered successfully; database: \
         {people} distinct unionids, {identities} identities, {live} live users, {merged} merged away"
    );
    check(
        duplicated_unions == 0,
        format!("no two users with one (open platform, unionid): {duplicated_unions}"),
    );
    check(
        live == people && live_without_union == 0,
        format!(
            "one live user per person: {live} live users, {people} people, {live_without_union} \
             live users without a unionid"
        ),
    );
    check(
        split == 0 && on_merged == 0,
        format!(
            "no person split across users ({split}), no identity on a merged-away user ({on_merged})"
        ),
    );
    check(
        unresolved == 0,
        format!("every identity's unionid resolved: {unresolved} without"),
    );
    check(
        confirmed <= people && people <= attempted,
        format!(
            "users count == distinct people: {confirmed} confirmed <= {people} <= {attempted} named"
        ),
    );
    db.close().await?;
    Ok(failed)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.instances.is_empty() || args.mps.is_empty() {
        bail!("--instances and --mps need at least one entry each");
    }
    let soak = Arc::new(Soak {
        http: reqwest::Client::builder()
            .pool_idle_timeout(Duration::from_secs(20))
            .build()?,
        counters: OPS
            .into_iter()
            .map(|op| (op, Counters::default()))
            .collect(),
        people: Mutex::new(People::default()),
        sent: Mutex::new(Vec::new()),
        duplicates_sent: AtomicU64::new(0),
        duplicates_acked: AtomicU64::new(0),
        relogins: AtomicU64::new(0),
        errors: Mutex::new(HashMap::new()),
        next_msg_id: AtomicU64::new(chrono::Utc::now().timestamp() as u64 * 1_000_000),
        args,
    });
    let started = Instant::now();
    let until = started + Duration::from_secs(soak.args.seconds);
    let reporter = tokio::spawn(progress(soak.clone(), started));
    let a = &soak.args;
    eprintln!(
        "[soak] {} s: logins {}/s, resolves {}/s, callbacks {}/s over {} instance(s)",
        a.seconds,
        a.login_rate,
        a.resolve_rate,
        a.callback_rate,
        a.instances.len()
    );
    let drivers = [
        (Op::Login, a.login_rate),
        (Op::Resolve, a.resolve_rate),
        (Op::Callback, a.callback_rate),
    ]
    .map(|(op, rate)| tokio::spawn(drive(soak.clone(), op, rate, until)));
    for d in drivers {
        d.await?;
    }
    reporter.abort();
    let elapsed = started.elapsed().as_secs_f64();

    println!(
        "\nload: {elapsed:.0} s, {} instance(s)",
        soak.args.instances.len()
    );
    println!(
        "{:<9} {:>9} {:>7} {:>8} {:>8} {:>8} {:>9} {:>9}",
        "operation", "ok", "ok/s", "failed", "rerouted", "skipped", "p50 ms", "p99 ms"
    );
    let mut total = 0;
    let mut failed_total = 0;
    for op in OPS {
        let c = soak.counters(op);
        let mut lat = c
            .latencies_us
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        lat.sort_unstable();
        let ok = c.ok.load(Ordering::Relaxed);
        let failed = c.failed.load(Ordering::Relaxed);
        total += ok + failed;
        failed_total += failed;
        println!(
            "{:<9} {:>9} {:>7.1} {:>8} {:>8} {:>8} {:>9.1} {:>9.1}",
            op.name(),
            ok,
            ok as f64 / elapsed,
            failed,
            c.rerouted.load(Ordering::Relaxed),
            c.skipped.load(Ordering::Relaxed),
            percentile(&lat, 0.5),
            percentile(&lat, 0.99)
        );
    }
    println!(
        "logins with a fresh code after a lost attempt had used theirs: {}",
        soak.relogins.load(Ordering::Relaxed)
    );
    let errors = soak
        .errors
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let mut errors: Vec<_> = errors.into_iter().collect();
    errors.sort_by_key(|e| std::cmp::Reverse(e.1));
    if !errors.is_empty() {
        println!("errors seen (attempts, including the ones retried elsewhere):");
        for (what, n) in errors.iter().take(15) {
            let what: String = what.chars().take(160).collect();
            println!("  {n:>7}  {what}");
        }
    }

    println!("\nreconciliation:");
    let mut failed = reconcile(&soak).await?;
    let failed_pct = 100.0 * failed_total as f64 / total.max(1) as f64;
    let ok = failed_pct <= soak.args.max_failed_percent;
    println!(
        "  [{}] operations failed after retries: {failed_total} of {total} ({failed_pct:.3}%, \
         allowed {}%)",
        if ok { "ok" } else { "FAIL" },
        soak.args.max_failed_percent
    );
    if !ok {
        failed.push("too many failed operations".to_owned());
    }
    if failed.is_empty() {
        println!("RESULT ok");
        Ok(())
    } else {
        println!("RESULT FAIL: {}", failed.join("; "));
        std::process::exit(1);
    }
}
