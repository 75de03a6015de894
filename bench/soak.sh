#!/usr/bin/env bash
# Soak: SOAK_SECONDS (default 600) of mixed load on two `wxunion serve` instances sharing one
# PostgreSQL database and Redis prefix, with the WeChat simulator: logins (new and returning
# people), resolveOpenId with an API key, official-account callbacks with WeChat's retries and
# duplicates sent on purpose, and one restart of an instance halfway. RSS of every wxunion
# process is sampled every 10 s. At the end `examples/soak.rs` reconciles the database with what
# it sent (no lost event, no duplicate user) and this script checks that memory stayed flat
# after warm-up. Exits non-zero when a check fails. See README.md, "Soak". Not part of .ci/run.
set -euo pipefail

DURATION=${SOAK_SECONDS:-600}
LOGIN_RATE=${SOAK_LOGIN_RATE:-60}
RESOLVE_RATE=${SOAK_RESOLVE_RATE:-30}
CALLBACK_RATE=${SOAK_CALLBACK_RATE:-100}
DUPLICATE_PERCENT=${SOAK_DUPLICATE_PERCENT:-5}
RESTART=${SOAK_RESTART:-kill} # kill (SIGKILL), term (graceful) or none
RESTART_AT=${SOAK_RESTART_AT:-$((DURATION / 2))}
WARMUP=${SOAK_WARMUP_SECONDS:-120}
RSS_MAX_GROWTH_MB=${SOAK_RSS_MAX_GROWTH_MB:-16}
RSS_MAX_GROWTH_PERCENT=${SOAK_RSS_MAX_GROWTH_PERCENT:-20}
SAMPLE_EVERY=${SOAK_SAMPLE_SECONDS:-10}
PROFILE=${SOAK_PROFILE:-release}
BASE_PORT=${SOAK_PORT:-18280}
SERVER_LOG=${SOAK_RUST_LOG:-warn}
EXTRA_CONFIG=${SOAK_EXTRA_CONFIG:-} # top-level TOML lines added to the instances' config
PG_HOST=127.0.0.1
PG_USER=postgres

OA=wx7000000000000001
MP1=wx7100000000000001
MP2=wx7100000000000002
API_KEY=soak-service-key-0123456789
TOKEN=soaktoken
AES_KEY=abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
case $PROFILE in
release) BIN=$ROOT/target/release; BUILD_FLAGS=(--release) ;;
debug) BIN=$ROOT/target/debug; BUILD_FLAGS=() ;;
*) echo "SOAK_PROFILE must be release or debug" >&2; exit 2 ;;
esac
WX_BIN=$BIN/wxunion
DB=wxunion_soak_$$
REDIS_PREFIX="wxunion-soak-$$:"
WORK=$(mktemp -d /tmp/wxunion-soak.XXXXXX)
CSV=$WORK/rss.csv

log() { printf '[soak] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

PIDS=()
DB_CREATED=0
STARTED_REDIS=0
STARTED_PG=0
cleanup() {
    local rc=$?
    set +e
    local all=("${PIDS[@]}") f
    for f in "$WORK"/wxunion-*.pid; do [[ -f $f ]] && all+=("$(cat "$f")"); done
    for pid in "${all[@]}"; do kill "$pid" 2>/dev/null; done
    for pid in "${all[@]}"; do
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null
    done
    if [[ $DB_CREATED == 1 ]]; then
        psql -h "$PG_HOST" -U "$PG_USER" -d postgres -qtAc "drop database if exists $DB with (force)" >/dev/null \
            && log "dropped database $DB"
    fi
    if redis-cli ping >/dev/null 2>&1; then
        # Keys are letters, digits and ':' '_' '-' only: safe to hand to xargs, 500 per DEL.
        redis-cli --scan --pattern "${REDIS_PREFIX}*" | xargs -r -n 500 redis-cli del >/dev/null
    fi
    if [[ $STARTED_REDIS == 1 && ${SOAK_KEEP_SERVICES:-0} != 1 ]]; then
        redis-cli shutdown nosave >/dev/null 2>&1; log "stopped the Redis this script started"
    fi
    if [[ $STARTED_PG == 1 && ${SOAK_KEEP_SERVICES:-0} != 1 ]]; then
        pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main stop
        log "stopped the PostgreSQL this script started"
    fi
    if [[ ${SOAK_KEEP_WORK:-0} == 1 ]]; then log "kept $WORK"; else rm -rf "$WORK"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
rss_mb() { awk '/^VmRSS/ { printf "%.1f", $2 / 1024 }' "/proc/$1/status" 2>/dev/null; }
cpu_s() { awk -v hz="$(getconf CLK_TCK)" '{ sub(/^.*\) /, ""); printf "%.1f", ($12 + $13) / hz }' "/proc/$1/stat" 2>/dev/null; }

# ---- services ---------------------------------------------------------------------------
start_services

# ---- build ------------------------------------------------------------------------------
if [[ ${SOAK_SKIP_BUILD:-0} != 1 ]]; then
    log "building ($PROFILE)"
    (cd "$ROOT" && cargo build "${BUILD_FLAGS[@]}" --bin wxunion --example soak --quiet)
fi
for b in "$WX_BIN" "$BIN/examples/soak"; do [[ -x $b ]] || die "$b is missing"; done

# ---- configuration ------------------------------------------------------------------------
PORTS=()
PORTS[0]=$(free_port "$BASE_PORT")
PORTS[1]=$(free_port $((PORTS[0] + 1)))
SIM_PORT=$(free_port $((PORTS[1] + 1)))
psql -h "$PG_HOST" -U "$PG_USER" -d postgres -qtAc "create database $DB" >/dev/null
DB_CREATED=1
DATABASE_URL="postgres://$PG_USER@$PG_HOST:5432/$DB"
cat >"$WORK/wxunion.toml" <<EOF
listen = "127.0.0.1:${PORTS[0]}"
database_url = "$DATABASE_URL"
redis_url = "redis://127.0.0.1:6379"
redis_prefix = "$REDIS_PREFIX"
wechat_api_base = "http://127.0.0.1:$SIM_PORT"
sandbox = false
# Every simulated client comes from 127.0.0.1: the per-address login limit (60 a minute by
# default) would refuse nearly all of them, so it is off; the per-app limit stays on.
login_rate_per_client = 0
$EXTRA_CONFIG

[[api_keys]]
name = "soak"
key = "$API_KEY"

[[apps]]
app_id = "$OA"
secret = "soak-secret-oa"
kind = "official_account"
open_platform = "soak"
token = "$TOKEN"
encoding_aes_key = "$AES_KEY"

[[apps]]
app_id = "$MP1"
secret = "soak-secret-mp1"
kind = "mini_program"
open_platform = "soak"

[[apps]]
app_id = "$MP2"
secret = "soak-secret-mp2"
kind = "mini_program"
open_platform = "soak"
EOF

# ---- processes ------------------------------------------------------------------------------
start_sim "$WX_BIN" "$SIM_PORT" "http://127.0.0.1:${PORTS[0]}"
"$WX_BIN" --config "$WORK/wxunion.toml" migrate >"$WORK/migrate.log" 2>&1 \
    || die "migrate failed: $(cat "$WORK/migrate.log")"
start_instance() { # index
    local port=${PORTS[$1]}
    WXUNION_LISTEN="127.0.0.1:$port" RUST_LOG=$SERVER_LOG "$WX_BIN" --config "$WORK/wxunion.toml" serve \
        >>"$WORK/wxunion-$1.log" 2>&1 &
    echo $! >"$WORK/wxunion-$1.pid"
    wait_http "http://127.0.0.1:$port/healthz" 60 "$!"
}
instance_pid() { cat "$WORK/wxunion-$1.pid"; }
wait_sim "$SIM_PORT"
start_instance 0
start_instance 1
log "wxunion on :${PORTS[0]} and :${PORTS[1]} (db $DB), simulator on :$SIM_PORT; $(nproc) CPUs," \
    "load $(cut -d' ' -f1-3 /proc/loadavg)"

# ---- load, samples, restart -----------------------------------------------------------------
LOAD_START=$(date +%s)
"$BIN/examples/soak" --instances "http://127.0.0.1:${PORTS[0]},http://127.0.0.1:${PORTS[1]}" \
    --sim "http://127.0.0.1:$SIM_PORT" --database-url "$DATABASE_URL" --api-key "$API_KEY" \
    --oa "$OA" --mps "$MP1,$MP2" --seconds "$DURATION" --login-rate "$LOGIN_RATE" \
    --resolve-rate "$RESOLVE_RATE" --callback-rate "$CALLBACK_RATE" \
    --duplicate-percent "$DUPLICATE_PERCENT" --people "soak$$" >"$WORK/soak.out" &
GEN_PID=$!
PIDS+=("$GEN_PID")

# CPU time of the whole machine so far: "busy nice total" in ticks (nice: processes at a
# positive nice level, such as a fuzzer at nice 19).
busy_nice_ticks() { awk '/^cpu / { print $2 + $4 + $7 + $8 + $9, $3, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9 }' /proc/stat; }
# One row every SAMPLE_EVERY seconds while the load runs: seconds since the load started, the
# 1-minute load average, the share of the machine's CPU busy at normal priority and at a
# positive nice level over the last interval, RSS (MB) of both instances and of the simulator.
sampler() {
    echo "t_s,load1,cpu_busy_%,cpu_nice_%,wxunion_0_mb,wxunion_1_mb,sim_mb" >"$CSV"
    local next=$LOAD_START t before now
    before=$(busy_nice_ticks)
    while ((next - LOAD_START <= DURATION)); do
        t=$(date +%s)
        ((t < next)) && sleep $((next - t))
        now=$(busy_nice_ticks)
        echo "$((next - LOAD_START)),$(cut -d' ' -f1 /proc/loadavg)," \
            "$(awk -v a="$before" -v b="$now" 'BEGIN { split(a, x, " "); split(b, y, " "); t = y[3] - x[3];
                if (t < 100) { printf "-,-"; exit } # the first row: no interval yet
                printf "%.0f,%.0f", 100 * (y[1] - x[1]) / t, 100 * (y[2] - x[2]) / t }')," \
            "$(rss_mb "$(instance_pid 0)"),$(rss_mb "$(instance_pid 1)"),$(rss_mb "$SIM_PID")" | tr -d ' ' >>"$CSV"
        before=$now
        next=$((next + SAMPLE_EVERY))
    done
}
sampler &
SAMPLER_PID=$!
PIDS+=("$SAMPLER_PID")

RESTARTED_AT=""
if [[ $RESTART != none ]] && ((RESTART_AT < DURATION)); then
    while (($(date +%s) < LOAD_START + RESTART_AT)) && kill -0 "$GEN_PID" 2>/dev/null; do sleep 1; done
    old=$(instance_pid 1)
    if [[ $RESTART == kill ]]; then
        kill -9 "$old"
    else
        kill -TERM "$old"
    fi
    wait "$old" 2>/dev/null || true # reaped here, so bash reports nothing
    down=$(date +%s.%N)
    start_instance 1
    RESTARTED_AT=$(($(date +%s) - LOAD_START))
    log "restarted instance 1 (SIG${RESTART^^}) at t=${RESTARTED_AT}s," \
        "down $(awk -v a="$down" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }') s"
fi

set +e
wait "$GEN_PID"
GEN_RC=$?
set -e
if ((GEN_RC == 0)); then wait "$SAMPLER_PID" 2>/dev/null || true; else kill "$SAMPLER_PID" 2>/dev/null || true; fi
CPU0=$(cpu_s "$(instance_pid 0)"); CPU1=$(cpu_s "$(instance_pid 1)")

# ---- report -------------------------------------------------------------------------------
echo
echo "soak: ${DURATION}s, logins ${LOGIN_RATE}/s, resolves ${RESOLVE_RATE}/s, callbacks ${CALLBACK_RATE}/s" \
    "(${DUPLICATE_PERCENT}% sent twice), restart: ${RESTART}${RESTARTED_AT:+ of instance 1 at t=${RESTARTED_AT}s}," \
    "$(nproc) CPUs, $PROFILE build"
cat "$WORK/soak.out"
echo
echo "every ${SAMPLE_EVERY}s: machine load average and CPU use (busy at normal priority, niced), RSS in MB" \
    "(instance 1 restarted at t=${RESTARTED_AT:-never}s):"
column -s, -t <"$CSV"
echo "CPU seconds used: instance 0 ${CPU0:-?}, instance 1 ${CPU1:-?} (since its restart)"
for i in 0 1; do
    n=$(grep -cE ' (WARN|ERROR) ' "$WORK/wxunion-$i.log" || true)
    echo "instance $i log: $n lines at warn or error"
    # The most frequent messages, without their timestamps and spans' request ids.
    grep -E ' (WARN|ERROR) ' "$WORK/wxunion-$i.log" | sed -E 's/^[^ ]+ +//; s/request_id=[^ ]+//' \
        | cut -c1-150 | sort | uniq -c | sort -rn | head -5 | sed 's/^/    /' || true
done

# Memory flat after warm-up: each instance's RSS at the end of the load against its RSS
# WARMUP seconds after it started (the restarted one: after its restart).
MEM_FAIL=0
check_rss() { # column label started_at
    local col=$1 label=$2 from=$(($3 + WARMUP))
    local verdict
    verdict=$(awk -F, -v col="$col" -v from="$from" -v dur="$DURATION" -v mb="$RSS_MAX_GROWTH_MB" \
        -v pct="$RSS_MAX_GROWTH_PERCENT" '
        NR == 1 || $col == "" { next }
        $1 >= from && ref == "" { ref = $col; ref_t = $1 }
        $1 <= dur { end = $col; end_t = $1 }
        END {
            if (ref == "" || end_t - ref_t < 60) { print "n/a (less than 60 s of samples after warm-up)"; exit }
            allowed = ref * pct / 100; if (allowed < mb) allowed = mb
            growth = end - ref
            printf "%s %.1f MB at t=%ss -> %.1f MB at t=%ss: %+.1f MB (allowed +%.1f MB)\n", \
                (growth <= allowed ? "ok" : "FAIL"), ref, ref_t, end, end_t, growth, allowed
        }' "$CSV")
    echo "  [$label] ${verdict}"
    [[ $verdict != FAIL* ]] || MEM_FAIL=1
}
echo "memory flat after ${WARMUP}s of warm-up (growth allowed: ${RSS_MAX_GROWTH_PERCENT}% or ${RSS_MAX_GROWTH_MB} MB, the larger):"
check_rss 5 "instance 0" 0
check_rss 6 "instance 1" "${RESTARTED_AT:-0}"

status=0
((GEN_RC == 0)) || { log "FAIL: reconciliation or load (exit $GEN_RC; logs in $WORK with SOAK_KEEP_WORK=1)"; status=1; }
((MEM_FAIL == 0)) || { log "FAIL: memory grew after warm-up"; status=1; }
((status == 0)) && log "soak passed"
exit "$status"
