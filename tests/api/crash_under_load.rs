//! A crash under load: two `wxunion serve` processes on one PostgreSQL database and Redis
//! prefix take distinct safe-mode subscribe events from WeChat-like senders while one of them
//! is killed with SIGKILL and restarted on the same port. Afterwards every acknowledged event
//! has been applied exactly once, and no event twice.
//!
//! `CRASH_UNDER_LOAD_EVENTS` sets the number of events (default 10 000). Run with
//! `cargo test --test api crash_under_load -- --nocapture` to see the counts.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement};
use serde_json::json;
use wxunion::wechat::{crypto, message};

use crate::helpers::*;

/// An official account bound to the open platform, in safe mode, with no welcome reply: every
/// acknowledgement is a plain `success`, and every job calls `user/info` for the unionid.
const APP: &str = "wx6000000000000001";
const TS: &str = "1795636223";
const NONCE: &str = "987654321";
const CREATE_TIME: i64 = 1_795_636_000;
/// Senders in flight at once.
const SENDERS: usize = 32;
/// Attempts per event: the first and up to three retries, alternating between the instances.
const ATTEMPTS: usize = 4;
/// WeChat gives up on an attempt after five seconds.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);
/// A killed instance's jobs are claimed again after this lease.
const LEASE_SECONDS: u64 = 5;

fn config_text(port: u16, database_url: &str, prefix: &str, sim: &str) -> String {
    format!(
        "listen = \"127.0.0.1:{port}\"\ndatabase_url = \"{database_url}\"\n\
         redis_url = \"redis://127.0.0.1:6379\"\nredis_prefix = \"{prefix}\"\n\
         wechat_api_base = \"{sim}\"\njob_lease_seconds = {LEASE_SECONDS}\njob_workers = 16\n\n\
         [[apps]]\napp_id = \"{APP}\"\nsecret = \"secret-crash\"\nkind = \"official_account\"\n\
         open_platform = \"acme\"\ntoken = \"{OA_TOKEN}\"\nencoding_aes_key = \"{OA_AES_KEY}\"\n"
    )
}

/// One `wxunion serve` process, restartable on the same port with the same configuration;
/// its output goes to a log file shown when the test fails.
struct Instance {
    port: u16,
    config: PathBuf,
    log: PathBuf,
    child: Option<KillOnDrop>,
}

impl Instance {
    fn new(dir: &Path, n: usize, text: impl Fn(u16) -> String) -> Instance {
        let port = free_port();
        let config = dir.join(format!("instance-{n}.toml"));
        std::fs::write(&config, text(port)).unwrap();
        Instance {
            port,
            config,
            log: dir.join(format!("instance-{n}.log")),
            child: None,
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/wechat/callback/{APP}", self.port)
    }

    async fn start(&mut self, http: &reqwest::Client) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_wxunion"))
            .arg("--config")
            .arg(&self.config)
            .arg("serve")
            .env("RUST_LOG", "warn")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(KillOnDrop(child));
        let health = format!("http://127.0.0.1:{}/healthz", self.port);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ready = http.get(&health).send().await;
            if ready.is_ok_and(|r| r.status() == 200) {
                return;
            }
            let exited = self
                .child
                .as_mut()
                .and_then(|c| c.0.try_wait().ok().flatten());
            assert!(
                exited.is_none(),
                "instance on {} exited ({exited:?}):\n{}",
                self.port,
                self.log_tail()
            );
            assert!(
                Instant::now() < deadline,
                "instance on {} not ready",
                self.port
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILL, and reaped.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.0.kill().unwrap();
            child.0.wait().unwrap();
        }
    }

    /// `wxunion_callback_duplicates_total` of this process (since it last started).
    async fn duplicates(&self, http: &reqwest::Client) -> u64 {
        let metrics = http
            .get(format!("http://127.0.0.1:{}/metrics", self.port))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let name = format!("wxunion_callback_duplicates_total{{app_id=\"{APP}\"}} ");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&name))
            .map_or(0, |v| v.trim().parse().unwrap())
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

/// A pre-signed callback: one person's subscribe event, encrypted for the account.
struct Event {
    open_id: String,
    union_id: String,
    dedupe_key: String,
    query: Vec<(&'static str, String)>,
    body: String,
}

fn event(sim: &wxunion::sim::Simulator, i: usize) -> Event {
    let person = format!("follower-{i}");
    let open_id = sim.state.open_id(APP, &person);
    let union_id = sim.state.union_id(APP, &person).unwrap();
    let plain = message::event_xml("gh_crash", &open_id, CREATE_TIME, "subscribe", None);
    let dedupe_key = message::parse_message(&plain).unwrap().dedupe_key(APP);
    let mc = crypto::MsgCrypt::new(OA_TOKEN, OA_AES_KEY, APP).unwrap();
    let mut random = [b'0'; 16];
    random[..8].copy_from_slice(&(i as u64).to_le_bytes());
    let encrypt = mc.encrypt(&plain, random);
    let query = vec![
        ("signature", crypto::signature(OA_TOKEN, TS, NONCE)),
        ("timestamp", TS.to_owned()),
        ("nonce", NONCE.to_owned()),
        ("encrypt_type", "aes".to_owned()),
        (
            "msg_signature",
            crypto::msg_signature(OA_TOKEN, TS, NONCE, &encrypt),
        ),
    ];
    let body = message::encrypted_envelope_xml("gh_crash", &encrypt);
    Event {
        open_id,
        union_id,
        dedupe_key,
        query,
        body,
    }
}

/// What the senders saw.
#[derive(Default)]
struct Tally {
    acked: AtomicUsize,
    /// Events that needed more than one attempt.
    retried: AtomicUsize,
    /// Failed attempts by cause.
    refused: AtomicUsize,
    reset: AtomicUsize,
    timeout: AtomicUsize,
    error_status: AtomicUsize,
    /// Acknowledgements from the killed instance after its restart.
    acked_by_restarted: AtomicUsize,
    restarted: AtomicBool,
}

/// Sends one event as WeChat does, up to [`ATTEMPTS`] times, alternating between the
/// instances; whether it was acknowledged with `success`.
async fn deliver(
    http: &reqwest::Client,
    urls: &[String; 2],
    e: &Event,
    i: usize,
    t: &Tally,
) -> bool {
    for attempt in 0..ATTEMPTS {
        if attempt == 1 {
            t.retried.fetch_add(1, Ordering::Relaxed);
        }
        let target = (i + attempt) % 2;
        let sent = http
            .post(&urls[target])
            .query(&e.query)
            .body(e.body.clone())
            .timeout(ATTEMPT_TIMEOUT)
            .send()
            .await;
        let answer = match sent {
            Ok(resp) => {
                let status = resp.status();
                resp.text().await.map(|body| (status, body))
            }
            Err(err) => Err(err),
        };
        match answer {
            Ok((status, body)) if status == 200 && body == "success" => {
                t.acked.fetch_add(1, Ordering::Relaxed);
                if target == 0 && t.restarted.load(Ordering::Relaxed) {
                    t.acked_by_restarted.fetch_add(1, Ordering::Relaxed);
                }
                return true;
            }
            Ok(_) => t.error_status.fetch_add(1, Ordering::Relaxed),
            Err(err) if err.is_timeout() => t.timeout.fetch_add(1, Ordering::Relaxed),
            Err(err) if err.is_connect() => t.refused.fetch_add(1, Ordering::Relaxed),
            Err(_) => t.reset.fetch_add(1, Ordering::Relaxed),
        };
    }
    false
}

async fn rows(db: &DatabaseConnection, sql: &str) -> Vec<sea_orm::QueryResult> {
    db.query_all_raw(Statement::from_string(DbBackend::Postgres, sql.to_owned()))
        .await
        .unwrap()
}

/// `(key, count)` rows of a two-column query.
async fn counted(db: &DatabaseConnection, sql: &str) -> HashMap<String, i64> {
    rows(db, sql)
        .await
        .into_iter()
        .map(|r| {
            (
                r.try_get_by_index(0).unwrap(),
                r.try_get_by_index(1).unwrap(),
            )
        })
        .collect()
}

async fn scalar(db: &DatabaseConnection, sql: &str) -> i64 {
    rows(db, sql).await[0].try_get_by_index(0).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_callback_acknowledged_while_an_instance_is_killed_under_load_is_applied_exactly_once()
 {
    let n: usize = std::env::var("CRASH_UNDER_LOAD_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let kill_at = n * 3 / 10;
    let prefix = format!("wxunion-test-{}:", uuid::Uuid::new_v4().simple());
    let test_db = fresh_postgres().await.with_redis_prefix(&prefix);
    let tmp = tempfile::tempdir().unwrap();
    let sim_config = load_config(
        tmp.path(),
        &config_text(0, &test_db.url, &prefix, "http://127.0.0.1:1"),
    );
    let sim = wxunion::sim::Simulator::spawn(sim_apps(&sim_config), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    // follower-1..n follow the account at the simulator, so `user/info` knows them.
    let http = reqwest::Client::new();
    let followers = post_json(
        &http,
        &format!("{}/sim/followers", sim.base_url()),
        &json!({ "app_id": APP, "count": n }),
    )
    .await;
    assert_eq!(followers["followers"], n);
    let events: Arc<Vec<Event>> = Arc::new((1..=n).map(|i| event(&sim, i)).collect());

    let text = |port| config_text(port, &test_db.url, &prefix, &sim.base_url());
    let mut a = Instance::new(tmp.path(), 0, text);
    let mut b = Instance::new(tmp.path(), 1, text);
    a.start(&http).await;
    b.start(&http).await;
    let urls = Arc::new([a.url(), b.url()]);
    let tally = Arc::new(Tally::default());

    let started = Instant::now();
    let senders = tokio::spawn({
        let (events, urls, tally) = (events.clone(), urls.clone(), tally.clone());
        let http = reqwest::Client::new();
        async move {
            futures::stream::iter(0..events.len())
                .map(|i| {
                    let (events, urls, tally, http) =
                        (events.clone(), urls.clone(), tally.clone(), http.clone());
                    async move { (i, deliver(&http, &urls, &events[i], i, &tally).await) }
                })
                .buffer_unordered(SENDERS)
                .collect::<Vec<(usize, bool)>>()
                .await
        }
    });
    // Mid-load: SIGKILL instance 0 and start it again on the same port.
    eventually(300, || async {
        (tally.acked.load(Ordering::Relaxed) >= kill_at || senders.is_finished()).then_some(())
    })
    .await;
    let acked_at_kill = tally.acked.load(Ordering::Relaxed);
    a.kill();
    let killed = Instant::now();
    a.start(&http).await;
    let restart = killed.elapsed();
    tally.restarted.store(true, Ordering::Relaxed);
    let outcomes = senders.await.unwrap();
    let sent_in = started.elapsed();
    // Retries whose first attempt had been recorded before its answer was lost.
    let mut deduplicated = 0;
    for instance in [&a, &b] {
        deduplicated += instance.duplicates(&http).await;
    }

    // Wait for the queue to drain: every recorded job done (or dead, which fails below).
    let db = wxunion::store::connect(&test_db.url, 2).await.unwrap();
    let drain_started = Instant::now();
    eventually(180, || async {
        let open = scalar(
            &db,
            "SELECT COUNT(*) FROM jobs WHERE status NOT IN ('done', 'dead')",
        )
        .await;
        (open == 0).then_some(())
    })
    .await;
    let drained_in = drain_started.elapsed();

    let jobs = counted(
        &db,
        "SELECT dedupe_key, COUNT(*) FROM jobs WHERE status = 'done' GROUP BY 1",
    )
    .await;
    let identities: HashMap<String, String> = rows(
        &db,
        &format!("SELECT open_id, COALESCE(union_id, '') FROM identities WHERE app_id = '{APP}'"),
    )
    .await
    .into_iter()
    .map(|r| {
        (
            r.try_get_by_index(0).unwrap(),
            r.try_get_by_index(1).unwrap(),
        )
    })
    .collect();
    let subscribed = counted(
        &db,
        &format!(
            "SELECT open_id, COUNT(*) FROM events WHERE app_id = '{APP}' AND kind = 'subscribed' GROUP BY 1"
        ),
    )
    .await;
    let all_jobs = scalar(&db, "SELECT COUNT(*) FROM jobs").await;
    let dead_jobs = scalar(&db, "SELECT COUNT(*) FROM jobs WHERE status = 'dead'").await;
    let live_users = scalar(&db, "SELECT COUNT(*) FROM users WHERE merged_into IS NULL").await;
    let user_info_calls = sim.state.world().counts.get("cgi-bin/user/info").copied();
    db.close().await.unwrap();

    let mut acked = 0;
    let mut lost = Vec::new();
    let mut duplicates = Vec::new();
    let mut unacked_applied = 0;
    let mut applied = 0;
    for (i, ok) in &outcomes {
        let e = &events[*i];
        let times = subscribed.get(&e.open_id).copied().unwrap_or(0);
        let is_applied = times == 1
            && identities.get(&e.open_id) == Some(&e.union_id)
            && jobs.get(&e.dedupe_key) == Some(&1);
        applied += usize::from(times >= 1);
        if times > 1 {
            duplicates.push(format!("{} applied {times} times", e.open_id));
        }
        if *ok {
            acked += 1;
            if !is_applied {
                lost.push(format!(
                    "{}: {times} SUBSCRIBED, identity {:?}, job done {:?}",
                    e.open_id,
                    identities.get(&e.open_id),
                    jobs.get(&e.dedupe_key)
                ));
            }
        } else if times >= 1 {
            unacked_applied += 1;
        }
    }
    let count = |c: &AtomicUsize| c.load(Ordering::Relaxed);
    let report = format!(
        "crash under load: {n} events, {SENDERS} senders, SIGKILL of 1 of 2 instances after {acked_at_kill} \
         acknowledgements, restarted in {:.1} s; sent in {:.1} s, queue drained {:.1} s later\n\
         acked {acked}, never acked {}, retried {} (failed attempts: refused {}, reset {}, timeout {}, \
         error status {}), acked by the restarted instance {}, retries answered as duplicates \
         {deduplicated}\n\
         applied {applied} (of them never acked {unacked_applied}), lost {}, duplicates {}; \
         jobs {all_jobs} (dead {dead_jobs}), identities {}, live users {live_users}, \
         user/info calls {}",
        restart.as_secs_f64(),
        sent_in.as_secs_f64(),
        drained_in.as_secs_f64(),
        n - acked,
        count(&tally.retried),
        count(&tally.refused),
        count(&tally.reset),
        count(&tally.timeout),
        count(&tally.error_status),
        count(&tally.acked_by_restarted),
        lost.len(),
        duplicates.len(),
        identities.len(),
        user_info_calls.unwrap_or(0),
    );
    println!("{report}");
    let logs = || {
        format!(
            "instance 0:\n{}\ninstance 1:\n{}",
            a.log_tail(),
            b.log_tail()
        )
    };
    assert!(
        lost.is_empty(),
        "{report}\nlost: {:?}\n{}",
        &lost[..lost.len().min(10)],
        logs()
    );
    assert!(
        duplicates.is_empty(),
        "{report}\n{:?}\n{}",
        &duplicates[..duplicates.len().min(10)],
        logs()
    );
    assert_eq!(dead_jobs, 0, "{report}\n{}", logs());
    // Each event recorded at most once, each person one user.
    assert_eq!(all_jobs as usize, applied, "{report}");
    assert_eq!(identities.len(), applied, "{report}");
    assert_eq!(live_users as usize, applied, "{report}");
    // The scenario happened: the kill hit requests in flight, and the restarted instance served.
    assert!(acked_at_kill < n, "{report}");
    assert!(count(&tally.retried) > 0, "{report}");
    assert!(count(&tally.acked_by_restarted) > 0, "{report}");
}
