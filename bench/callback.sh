#!/usr/bin/env bash
# Safe-mode callback throughput: wxunion's POST /wechat/callback/{appId} (verify, decrypt,
# parse, dedupe and durably record in Postgres before answering `success`) against a bare
# axum handler answering `success`, both driven by wrk with the same pre-signed requests.
# See bench/README.md. All traffic stays on 127.0.0.1 and every wrk run is time-bounded.
set -euo pipefail

SECONDS_PER_RUN=${BENCH_SECONDS:-15}
WARMUP=${BENCH_WARMUP:-3}
CONNECTIONS=${BENCH_CONNECTIONS:-64}
THREADS=${BENCH_THREADS:-1}
# Enough distinct callbacks for ~40k/s per second of run (at least 400k); wrk threads that run
# out start again, and the repeats only hit dedupe (the report warns).
REQUESTS=${BENCH_REQUESTS:-$((SECONDS_PER_RUN * 40000 > 400000 ? SECONDS_PER_RUN * 40000 : 400000))}
JOB_WORKERS=${BENCH_JOB_WORKERS:-}   # empty: the configuration's default (4 workers)
WECHAT=${BENCH_WECHAT:-unreachable}  # unreachable (nothing listens) or sim (the simulator)
KIND=${BENCH_KIND:-subscribe}        # subscribe (a new follower each) or text (10 000 followers)
OPEN_PLATFORM=${BENCH_OPEN_PLATFORM:-1}
SERVER_LOG=${BENCH_RUST_LOG:-error}
SYNC_COMMIT=${BENCH_PG_SYNCHRONOUS_COMMIT:-} # diagnostic only: e.g. off, for this database
PG_HOST=127.0.0.1
PG_USER=postgres

APP_ID=wxbe0c4a11b1e0c4a1
TOKEN=benchtoken
AES_KEY=abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=$ROOT/target/release
WX_BIN=${BENCH_WXUNION_BIN:-$BIN/wxunion} # e.g. a build of an experimental copy
DB=wxunion_bench_$$
REDIS_PREFIX="wxunion-bench-$$:"
WORK=$(mktemp -d "${BENCH_TMPDIR:-/dev/shm}/wxunion-bench.XXXXXX")

log() { printf '[bench] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

PIDS=()
DB_CREATED=0
STARTED_REDIS=0
STARTED_PG=0
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
trap bench_cleanup EXIT
trap 'exit 130' INT TERM

jobs_count() { psql -h "$PG_HOST" -U "$PG_USER" -d "$DB" -tAc "select count(*) from jobs"; }
# Server-wide PostgreSQL counters that explain latency tails: checkpoints, buffers the
# backends had to write themselves, WAL bytes, WAL writes forced by full WAL buffers.
pg_counters() {
    psql -h "$PG_HOST" -U "$PG_USER" -d "$DB" -tAF' ' -c "select b.checkpoints_timed + b.checkpoints_req,
        b.buffers_backend, w.wal_bytes, w.wal_buffers_full from pg_stat_bgwriter b, pg_stat_wal w"
}

# ---- services -------------------------------------------------------------------------
start_services
need_wrk

# ---- build ------------------------------------------------------------------------------
if [[ ${BENCH_SKIP_BUILD:-0} != 1 ]]; then
    log "building (release)"
    (cd "$ROOT" && cargo build --release --bin wxunion --examples --quiet)
fi
for b in "$WX_BIN" "$BIN/examples/bench_baseline" "$BIN/examples/bench_requests"; do
    [[ -x $b ]] || die "$b is missing"
done

# ---- configuration ------------------------------------------------------------------------
PORT=$(free_port 18080)
SIM_PORT=$(free_port $((PORT + 1)))
BARE_PORT=$(free_port $((SIM_PORT + 1)))
psql -h "$PG_HOST" -U "$PG_USER" -d postgres -qtAc "create database $DB" >/dev/null
DB_CREATED=1
if [[ -n $SYNC_COMMIT ]]; then
    psql -h "$PG_HOST" -U "$PG_USER" -d postgres -qtAc \
        "alter database $DB set synchronous_commit = $SYNC_COMMIT" >/dev/null
    log "diagnostic: synchronous_commit = $SYNC_COMMIT for $DB"
fi
OP_LINE=""
[[ $OPEN_PLATFORM == 1 ]] && OP_LINE='open_platform = "bench"'
WORKERS_LINE=""
[[ -n $JOB_WORKERS ]] && WORKERS_LINE="job_workers = $JOB_WORKERS"
WECHAT_BASE="http://127.0.0.1:$SIM_PORT"
[[ $WECHAT == unreachable ]] && WECHAT_BASE="http://127.0.0.1:$(free_port $((BARE_PORT + 1)))"
POOL_LINE="" # only for builds that know `database_max_connections`
[[ -n ${BENCH_DB_MAX_CONNECTIONS:-} ]] && POOL_LINE="database_max_connections = $BENCH_DB_MAX_CONNECTIONS"
cat >"$WORK/wxunion.toml" <<EOF
listen = "127.0.0.1:$PORT"
database_url = "postgres://$PG_USER@$PG_HOST:5432/$DB"
redis_url = "redis://127.0.0.1:6379"
redis_prefix = "$REDIS_PREFIX"
wechat_api_base = "$WECHAT_BASE"
sandbox = false
$WORKERS_LINE
$POOL_LINE
${BENCH_EXTRA_CONFIG:-}

[[apps]]
app_id = "$APP_ID"
secret = "bench-secret"
kind = "official_account"
token = "$TOKEN"
encoding_aes_key = "$AES_KEY"
$OP_LINE
EOF

# ---- requests -----------------------------------------------------------------------------
gen() { "$BIN/examples/bench_requests" --app-id "$APP_ID" --token "$TOKEN" --aes-key "$AES_KEY" --kind "$KIND" "$@"; }
gen --out "$WORK/requests.txt" --count "$REQUESTS"
gen --out "$WORK/warmup.txt" --count 50000 --seq-start "$REQUESTS"

# ---- servers ------------------------------------------------------------------------------
"$BIN/examples/bench_baseline" "127.0.0.1:$BARE_PORT" >"$WORK/bare.log" 2>&1 &
PIDS+=($!); BARE_PID=$!
start_sim "$WX_BIN" "$SIM_PORT" "http://127.0.0.1:$PORT"
"$WX_BIN" --config "$WORK/wxunion.toml" migrate >"$WORK/migrate.log" 2>&1 \
    || die "migrate failed: $(cat "$WORK/migrate.log")"
if [[ -n ${BENCH_SETUP_SQL:-} ]]; then # diagnostic: e.g. try an index before changing migrations
    psql -h "$PG_HOST" -U "$PG_USER" -d "$DB" -qtAc "$BENCH_SETUP_SQL" >/dev/null
    log "diagnostic: applied BENCH_SETUP_SQL: $BENCH_SETUP_SQL"
fi
RUST_LOG=$SERVER_LOG "$WX_BIN" --config "$WORK/wxunion.toml" serve >"$WORK/wxunion.log" 2>&1 &
PIDS+=($!); WX_PID=$!
wait_http "http://127.0.0.1:$BARE_PORT/healthz" 20 "$BARE_PID"
wait_sim "$SIM_PORT"
wait_http "http://127.0.0.1:$PORT/healthz" 30 "$WX_PID"
log "bare on :$BARE_PORT, wxunion on :$PORT (db $DB, job_workers ${JOB_WORKERS:-default}, WeChat $WECHAT), simulator on :$SIM_PORT"

# One wrk run; prints the BENCH line. Args: label port requests_file seconds
run_wrk() {
    local out=$WORK/wrk-$1.txt
    rm -f "$out.ready" # wrk_common.lua's start barrier: the last thread to load writes it
    wrk -t "$THREADS" -c "$CONNECTIONS" -d "${4}s" --timeout 10s --latency \
        -s "$ROOT/bench/callback.lua" "http://127.0.0.1:$2" -- "$3" "$THREADS" "$out.ready" >"$out" 2>&1 \
        || die "wrk failed: $(cat "$out")"
    grep '^BENCH ' "$out" || die "no BENCH line from wrk: $(cat "$out")"
}

# Measures one target: warm-up, then the timed run with CPU accounting. Sets R_<label>.
measure() { # label port pid
    local label=$1 port=$2 pid=$3
    log "$label: warm-up ${WARMUP}s"
    run_wrk "$label-warmup" "$port" "$WORK/warmup.txt" "$WARMUP" >/dev/null
    local before_rows="" cpu_srv0 cpu_pg0
    if [[ $label == callback ]]; then
        sleep 0.5 # let requests wrk abandoned at the warm-up deadline commit
        before_rows=$(jobs_count)
        PG_BEFORE=$(pg_counters)
        curl -fsS "http://127.0.0.1:$port/metrics" >"$WORK/metrics-before.txt" || true
    fi
    settle_disk
    log "$label: ${SECONDS_PER_RUN}s, $CONNECTIONS connections, $THREADS wrk thread(s)"
    run_wrk "$label" "$port" "$WORK/requests.txt" "$SECONDS_PER_RUN" >"$WORK/bench-$label.line" &
    local wrk_job=$!
    wait_wrk_loaded "$WORK/wrk-$label.txt.ready" "$wrk_job"
    cpu_srv0=$(cpu_of "$pid"); cpu_pg0=$(cpu_postgres); local ticks0; ticks0=$(cpu_ticks)
    local sys0; sys0=$(cpu_sys_of "$pid")
    wait "$wrk_job" || die "the $label run failed (logs in $WORK with BENCH_KEEP_WORK=1)"
    local line
    line=$(cat "$WORK/bench-$label.line")
    local cpu_srv cpu_pg
    cpu_srv=$(awk -v a="$cpu_srv0" -v b="$(cpu_of "$pid")" 'BEGIN { printf "%.1f", b - a }')
    cpu_pg=$(awk -v a="$cpu_pg0" -v b="$(cpu_postgres)" 'BEGIN { printf "%.1f", b - a }')
    line="$line cpu_server=$cpu_srv cpu_server_sys=$(awk -v a="$sys0" -v b="$(cpu_sys_of "$pid")" \
        'BEGIN { printf "%.1f", b - a }') cpu_postgres=$cpu_pg"
    local ticks1; ticks1=$(cpu_ticks)
    line="$line steal=$(steal_pct "$ticks0" "$ticks1") idle=$(idle_pct "$ticks0" "$ticks1")"
    line="$line busy=$(busy_seconds "$ticks0" "$ticks1")"
    if [[ $label == callback ]]; then
        sleep 0.5 # let requests wrk abandoned at the deadline finish
        line="$line rows=$(($(jobs_count) - before_rows))"
        PG_AFTER=$(pg_counters)
    fi
    printf -v "R_$label" '%s' "$line"
    log "$line"
}

measure bare "$BARE_PORT" "$BARE_PID"
measure callback "$PORT" "$WX_PID"

curl -fsS "http://127.0.0.1:$PORT/metrics" >"$WORK/metrics.txt" || true

# ---- report -------------------------------------------------------------------------------
ms() { awk -v us="$1" 'BEGIN { printf "%.2f", us / 1000 }'; }
b_rps=$(field rps "$R_bare"); c_rps=$(field rps "$R_callback")
ratio=$(awk -v c="$c_rps" -v b="$b_rps" 'BEGIN { printf "%.3f", c / b }')
c_req=$(field requests "$R_callback"); c_non2xx=$(field non2xx "$R_callback")
c_ok=$((c_req - c_non2xx)); rows=$(field rows "$R_callback")
sock_err=0
for k in connect_err read_err write_err timeouts; do
    sock_err=$((sock_err + $(field "$k" "$R_callback") + $(field "$k" "$R_bare")))
done

echo
echo "wxunion safe-mode callback vs bare axum: ${SECONDS_PER_RUN}s per run, $CONNECTIONS connections," \
    "$THREADS wrk thread(s), $(nproc) CPUs, job_workers=${JOB_WORKERS:-default}, WeChat $WECHAT," \
    "$KIND callbacks, open_platform=$OPEN_PLATFORM" \
    "${SYNC_COMMIT:+synchronous_commit=$SYNC_COMMIT}"
printf '%-10s %12s %10s %10s %10s %12s %14s %12s %8s %8s\n' target "requests/s" "p50 ms" "p90 ms" "p99 ms" \
    non-2xx "cpu server s" "cpu pg s" "steal %" "idle %"
for l in bare callback; do
    r=R_$l
    printf '%-10s %12s %10s %10s %10s %12s %14s %12s %8s %8s\n' "$l" "$(field rps "${!r}")" \
        "$(ms "$(field p50 "${!r}")")" "$(ms "$(field p90 "${!r}")")" "$(ms "$(field p99 "${!r}")")" \
        "$(field non2xx "${!r}")" "$(field cpu_server "${!r}")" "$(field cpu_postgres "${!r}")" \
        "$(field steal "${!r}")" "$(field idle "${!r}")"
done
echo "ratio callback/bare: $ratio (goal >= 0.3: $(awk -v r="$ratio" 'BEGIN { print (r >= 0.3) ? "met" : "NOT met" }'))"
echo "wxunion CPU per callback: $(awk -v c="$(field cpu_server "$R_callback")" -v n="$c_req" \
    'BEGIN { printf "%.1f", c * 1e6 / n }') us (goal <= 20); PostgreSQL: $(awk \
    -v c="$(field cpu_postgres "$R_callback")" -v n="$c_req" 'BEGIN { printf "%.1f", c * 1e6 / n }') us;" \
    "wxunion's in the kernel: $(awk -v c="$(field cpu_server_sys "$R_callback")" -v n="$c_req" \
    'BEGIN { printf "%.1f", c * 1e6 / n }') us"
# What the rest of the machine (wrk, mostly) spent per request: a bare run whose wrk got slower
# has a lower rate for the same server, and the ratio then flatters the callbacks.
others_us() {
    awk -v b="$(field busy "$1")" -v s="$(field cpu_server "$1")" -v p="$(field cpu_postgres "$1")" \
        -v n="$(field requests "$1")" 'BEGIN { printf "%.1f", (b - s - p) * 1e6 / n }'
}
echo "CPU per request outside the server and PostgreSQL (wrk, mostly): bare $(others_us "$R_bare") us," \
    "callback $(others_us "$R_callback") us"
echo "callback: $c_ok successful responses counted by wrk, $rows jobs rows written during the run" \
    "(rows may exceed responses by requests in flight at the deadline)"
echo "jobs by status after the run (the worker(s) drain the inbox behind the callbacks):" \
    "$(psql -h "$PG_HOST" -U "$PG_USER" -d "$DB" -tAc \
        "select string_agg(status || '=' || n, ' ') from (select status, count(*) n from jobs group by 1 order by 1) s")"
read -r ck0 bb0 wal0 wbf0 <<<"$PG_BEFORE"; read -r ck1 bb1 wal1 wbf1 <<<"$PG_AFTER"
echo "PostgreSQL during the callback run (whole server): $((ck1 - ck0)) checkpoint(s)," \
    "$((bb1 - bb0)) buffers written by backends, $(awk -v a="$wal0" -v b="$wal1" \
    'BEGIN { printf "%.0f", (b - a) / 1048576 }') MB of WAL ($(awk -v a="$wal0" -v b="$wal1" -v n="$c_req" \
    'BEGIN { printf "%.0f", (b - a) / n }') bytes per callback), $((wbf1 - wbf0)) writes forced by full WAL buffers"
wraps=$(field wraps "$R_callback")
[[ $wraps == 0 ]] || echo "warning: wrk threads wrapped around their request lists $wraps time(s);" \
    "repeats were answered by dedupe (raise BENCH_REQUESTS)"
echo "inbox batch sizes (wxunion_inbox_batch_size):"
grep '^wxunion_inbox_batch_size' "$WORK/metrics.txt" | sed 's/^/  /' || echo "  (not exported)"
awk '/^wxunion_inbox_batch_size_sum/ { s = $2 } /^wxunion_inbox_batch_size_count/ { c = $2 }
     END { if (c) printf "  mean rows per INSERT since start (warm-up included): %.1f over %d INSERTs\n", s / c, c }' \
    "$WORK/metrics.txt"

echo "inbox flush durations, statement and commit, seconds (wxunion_inbox_flush_seconds):"
grep '^wxunion_inbox_flush_seconds{' "$WORK/metrics.txt" | sed 's/^/  /' || echo "  (not exported)"

# The handler's own view of the timed run (wxunion_callback_seconds, the counts after the run
# minus those before it), beside wrk's. wrk corrects its latencies for coordinated omission:
# an answer that took L adds samples L - i, L - 2i, ... where i is the run's mean interval
# between requests on one connection, so one stall that holds every connection (an inbox
# statement waiting on a slow WAL sync) weighs on wrk's p99 far more than its few requests.
awk -v i_us="$(awk -v s="$(field seconds "$R_callback")" -v n="$c_req" -v c="$CONNECTIONS" \
        'BEGIN { printf "%.0f", s * 1e6 / (n / c) }')" '
    /^wxunion_callback_seconds_bucket\{le="/ {
        split($1, p, "\""); if (FILENAME ~ /before/) b[p[2]] = $2; else { a[p[2]] = $2; le[++k] = p[2] } }
    END {
        n = a["+Inf"] - b["+Inf"]; if (n <= 0) exit
        for (j = 1; j <= k; j++) { d = a[le[j]] - b[le[j]]; if (!q && d >= 0.99 * n) q = le[j] }
        printf "the handler during the timed run (wxunion_callback_seconds): %.2f %% within 10 ms, p99 <= %s s," \
            " %d callbacks over 100 ms; wrk adds coordinated-omission samples every %.1f ms of a slow answer\n",
            100 * (a["0.01"] - b["0.01"]) / n, q, n - (a["0.1"] - b["0.1"]), i_us / 1000 }' \
    "$WORK/metrics-before.txt" "$WORK/metrics.txt"

status=0
if ((c_non2xx > 0)) || (($(field non2xx "$R_bare") > 0)); then
    log "FAIL: non-2xx responses (callback $c_non2xx, bare $(field non2xx "$R_bare"))"; status=1
fi
((sock_err == 0)) || { log "FAIL: $sock_err socket errors/timeouts (see $WORK/wrk-*.txt)"; status=1; }
((rows >= c_ok)) || { log "FAIL: fewer rows ($rows) than successful responses ($c_ok)"; status=1; }
if [[ -n ${BENCH_MIN_RATIO:-} ]] && awk -v r="$ratio" -v m="$BENCH_MIN_RATIO" 'BEGIN { exit !(r < m) }'; then
    log "FAIL: ratio $ratio below BENCH_MIN_RATIO=$BENCH_MIN_RATIO"; status=1
fi
exit "$status"
