//! Helpers of `bench/login.sh`.
//!
//! `bench_login codes`: mints login codes at the simulator (`POST /sim/codes`) and writes one
//! request per line for `bench/replay.lua` (`METHOD\tpath\tbody`): either wxunion's
//! `loginWithCode` mutation (`--target graphql`) or the simulator's own `jscode2session`
//! (`--target sim`), so that both spend the same kind of code once each.
//!
//! `bench_login open-loop`: sends the lines of such a file at a fixed rate, whatever the
//! answers' latency (latency is measured from each request's scheduled start, so a stall is
//! not hidden by waiting for it), and prints `BENCH sent=… ok=… p50=… p99=…` in microseconds;
//! with `--trace FILE` it also writes every request's scheduled start and latency there.
//! A response counts as ok when it is 2xx and carries neither GraphQL `errors` nor a WeChat
//! `errcode` other than 0.

use std::io::{BufRead, BufWriter, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use serde_json::{Value, json};

#[derive(Parser)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Mint codes and write request lines.
    Codes {
        /// The simulator's base URL.
        #[arg(long)]
        sim: String,
        #[arg(long)]
        app_id: String,
        /// The app's secret (only for `--target sim`, which calls `jscode2session` itself).
        #[arg(long, default_value = "")]
        secret: String,
        /// People are `<prefix><i modulo people>`.
        #[arg(long)]
        prefix: String,
        #[arg(long)]
        people: u64,
        /// How many codes (requests).
        #[arg(long)]
        count: u64,
        /// `graphql` (wxunion's loginWithCode) or `sim` (the simulator's jscode2session).
        #[arg(long)]
        target: String,
        #[arg(long)]
        out: PathBuf,
    },
    /// Send a request file at a fixed rate.
    OpenLoop {
        /// The server's base URL.
        #[arg(long)]
        url: String,
        #[arg(long)]
        file: PathBuf,
        /// Requests per second.
        #[arg(long)]
        rate: u64,
        #[arg(long)]
        seconds: u64,
        /// Also write each request's scheduled start and latency (microseconds, tab-separated,
        /// in sending order) there, to see whether slow answers come together in time.
        #[arg(long)]
        trace: Option<PathBuf>,
    },
}

const LOGIN: &str = "mutation L($a: String!, $c: String!) { loginWithCode(appId: $a, code: $c) \
                     { sessionToken expiresAt isNewUser user { id unionId } } }";
/// Codes per `/sim/codes` call.
const CHUNK: u64 = 50_000;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Args::parse().command {
        Command::Codes {
            sim,
            app_id,
            secret,
            prefix,
            people,
            count,
            target,
            out,
        } => {
            if people == 0 {
                bail!("--people must be at least 1");
            }
            if target != "graphql" && target != "sim" {
                bail!("--target is graphql or sim");
            }
            let http = reqwest::Client::new();
            let file = std::fs::File::create(&out)
                .with_context(|| format!("cannot create {}", out.display()))?;
            let mut w = BufWriter::with_capacity(1 << 20, file);
            let mut start = 0;
            while start < count {
                let end = (start + CHUNK).min(count);
                let batch: Vec<String> = (start..end)
                    .map(|i| format!("{prefix}{}", i % people))
                    .collect();
                let resp: Value = http
                    .post(format!("{sim}/sim/codes"))
                    .json(&json!({ "app_id": app_id, "people": batch }))
                    .send()
                    .await?
                    .error_for_status()?
                    .json()
                    .await?;
                let codes = resp["codes"].as_array().context("no codes in the answer")?;
                for code in codes {
                    let code = code.as_str().context("a code is not a string")?;
                    if target == "graphql" {
                        let body =
                            json!({ "query": LOGIN, "variables": { "a": app_id, "c": code } });
                        writeln!(w, "POST\t/graphql\t{body}")?;
                    } else {
                        writeln!(
                            w,
                            "GET\t/sns/jscode2session?appid={app_id}&secret={secret}&js_code={code}\
                             &grant_type=authorization_code\t"
                        )?;
                    }
                }
                start = end;
            }
            w.flush()?;
            Ok(())
        }
        Command::OpenLoop {
            url,
            file,
            rate,
            seconds,
            trace,
        } => open_loop(&url, &file, rate, seconds, trace.as_deref()).await,
    }
}

/// Prints the first few failures (to stderr), so a failing run says why.
fn report(what: std::fmt::Arguments<'_>) {
    static SHOWN: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    if SHOWN.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < 5 {
        eprintln!("failed: {what}");
    }
}

async fn open_loop(
    url: &str,
    file: &PathBuf,
    rate: u64,
    seconds: u64,
    trace: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    if rate == 0 {
        bail!("--rate must be at least 1");
    }
    let lines: Vec<String> = std::io::BufReader::new(
        std::fs::File::open(file).with_context(|| format!("cannot open {}", file.display()))?,
    )
    .lines()
    .collect::<Result<_, _>>()?;
    let total = (rate * seconds) as usize;
    if lines.len() < total {
        bail!("{} lines, {total} needed", lines.len());
    }
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .timeout(Duration::from_secs(10))
        .build()?;
    let start = Instant::now() + Duration::from_millis(100);
    let start_wall = std::time::SystemTime::now() + Duration::from_millis(100);
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let mut tasks = Vec::with_capacity(total);
    for (i, line) in lines.into_iter().take(total).enumerate() {
        let at = start + interval * i as u32;
        tokio::time::sleep_until(at.into()).await;
        let http = http.clone();
        let url = url.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut parts = line.splitn(3, '\t');
            let (method, path, body) = (
                parts.next().unwrap_or(""),
                parts.next().unwrap_or(""),
                parts.next().unwrap_or(""),
            );
            let req = if method == "POST" {
                http.post(format!("{url}{path}"))
                    .header("content-type", "application/json")
                    .body(body.to_owned())
            } else {
                http.get(format!("{url}{path}"))
            };
            let ok = match req.send().await {
                Ok(resp) if resp.status().is_success() => match resp.json::<Value>().await {
                    Ok(v) => {
                        let ok =
                            v.get("errors").is_none() && v["errcode"].as_i64().unwrap_or(0) == 0;
                        if !ok {
                            report(format_args!("{v}"));
                        }
                        ok
                    }
                    Err(e) => {
                        report(format_args!("{e}"));
                        false
                    }
                },
                Ok(resp) => {
                    report(format_args!("status {}", resp.status()));
                    false
                }
                Err(e) => {
                    report(format_args!("{e}"));
                    false
                }
            };
            (at.elapsed(), ok)
        }));
    }
    let mut latencies = Vec::with_capacity(total);
    let mut ok = 0usize;
    for t in tasks {
        let (latency, good) = t.await?;
        latencies.push(latency.as_micros() as u64);
        ok += usize::from(good);
    }
    if let Some(path) = trace {
        let file = std::fs::File::create(path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        let mut w = BufWriter::new(file);
        // The first line: the first scheduled start as Unix time in microseconds, to line the
        // trace up with other logs.
        let epoch = start_wall.duration_since(std::time::UNIX_EPOCH)?;
        writeln!(w, "# start_unix_us={}", epoch.as_micros())?;
        for (i, latency) in latencies.iter().enumerate() {
            writeln!(w, "{}\t{latency}", (interval * i as u32).as_micros())?;
        }
        w.flush()?;
    }
    latencies.sort_unstable();
    let pct = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    println!(
        "BENCH sent={} ok={ok} rate={rate} p50={} p90={} p99={} max={}",
        latencies.len(),
        pct(0.50),
        pct(0.90),
        pct(0.99),
        latencies[latencies.len() - 1]
    );
    Ok(())
}
