#!/usr/bin/env bash
# Instructions per callback: `wxunion serve` under valgrind's callgrind, driven by wrk with the
# same pre-signed safe-mode subscribes as bench/callback.sh (default 4 job workers, WeChat
# unreachable). Instruction counts do not depend on what else the machine is doing, so two
# builds can be compared on a busy machine where wall-clock rates cannot. See bench/README.md.
#
#   bench/callgrind.sh                        # target/release/wxunion, 20 s of load
#   BENCH_WXUNION_BIN=/tmp/other/wxunion bench/callgrind.sh
#   BENCH_PROFILE=profiling bench/callgrind.sh  # no LTO: a finer function list
#   BENCH_CG_WHAT=login bench/callgrind.sh      # returning users' loginWithCode instead
#
# Prints wxunion's instructions per acknowledged callback (counted from zeroing the counters
# after a warm-up to the dump, divided by the rows the run added to `jobs`) and the functions
# with the most instructions of their own. Only wxunion's own process is counted, not PostgreSQL.
# With BENCH_CG_WHAT=login: a mini program on an open platform, the simulator (`wxunion sim`,
# not under valgrind) answering `jscode2session`, BENCH_CG_PEOPLE (200) people logged in once
# as the warm-up, then returning users' logins with codes each sent once, per session opened.
set -euo pipefail

SECONDS_PER_RUN=${BENCH_SECONDS:-20}
CONNECTIONS=${BENCH_CONNECTIONS:-16}
REQUESTS=${BENCH_REQUESTS:-100000}
JOB_WORKERS=${BENCH_JOB_WORKERS:-}
WHAT=${BENCH_CG_WHAT:-callback}
PEOPLE=${BENCH_CG_PEOPLE:-200}
[[ $WHAT == login ]] && REQUESTS=${BENCH_REQUESTS:-20000} # codes live 5 minutes
PG_HOST=127.0.0.1
PG_USER=postgres
APP_ID=wxbe0c4a11b1e0c4a1
TOKEN=benchtoken
AES_KEY=abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PROFILE=${BENCH_PROFILE:-release} # `profiling`: no LTO, a finer function list
BIN=$ROOT/target/$PROFILE
WX_BIN=${BENCH_WXUNION_BIN:-$BIN/wxunion}
DB=wxunion_cg_$$
REDIS_PREFIX="wxunion-cg-$$:"
WORK=$(mktemp -d "${BENCH_TMPDIR:-/dev/shm}/wxunion-cg.XXXXXX")

log() { printf '[callgrind] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

PIDS=()
DB_CREATED=0
STARTED_REDIS=0
STARTED_PG=0
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
trap bench_cleanup EXIT
trap 'exit 130' INT TERM

[[ $WHAT == callback || $WHAT == login ]] || die "BENCH_CG_WHAT is callback or login"
jobs_count() { psql -h "$PG_HOST" -U "$PG_USER" -d "$DB" -tAc "select count(*) from jobs"; }
sessions_count() { psql -h "$PG_HOST" -U "$PG_USER" -d "$DB" -tAc "select count(*) from sessions"; }
users_count() { psql -h "$PG_HOST" -U "$PG_USER" -d "$DB" -tAc "select count(*) from users"; }
# What the run counts: jobs recorded (callbacks) or sessions opened (logins).
done_count() { if [[ $WHAT == login ]]; then sessions_count; else jobs_count; fi; }

start_services
need_wrk
command -v valgrind >/dev/null || apt-get install -y valgrind >/dev/null
if [[ ${BENCH_SKIP_BUILD:-0} != 1 ]]; then
    log "building ($PROFILE)"
    (cd "$ROOT" && cargo build --profile "$PROFILE" --bin wxunion --example bench_requests --example bench_login --quiet)
fi

PORT=$(free_port 18580)
UNREACHABLE=$(free_port $((PORT + 1)))
psql -h "$PG_HOST" -U "$PG_USER" -d postgres -qtAc "create database $DB" >/dev/null
DB_CREATED=1
WORKERS_LINE=""
[[ -n $JOB_WORKERS ]] && WORKERS_LINE="job_workers = $JOB_WORKERS"
cat >"$WORK/wxunion.toml" <<EOF
listen = "127.0.0.1:$PORT"
database_url = "postgres://$PG_USER@$PG_HOST:5432/$DB"
redis_url = "redis://127.0.0.1:6379"
redis_prefix = "$REDIS_PREFIX"
wechat_api_base = "http://127.0.0.1:$UNREACHABLE"
sandbox = false
# callgrind runs the server some 50 times slower: keep its own deadlines out of the way.
database_timeout_ms = 30000
$WORKERS_LINE
EOF
if [[ $WHAT == login ]]; then
    # One client address sends every login: both rate limits off. The simulator (at full
    # speed, on the port callbacks leave unreachable) answers jscode2session and mints codes.
    cat >>"$WORK/wxunion.toml" <<EOF
login_rate_per_client = 0
login_rate_per_app = 0

[[apps]]
app_id = "$APP_ID"
secret = "bench-secret"
kind = "mini_program"
open_platform = "bench"
EOF
    start_sim "$BIN/wxunion" "$UNREACHABLE" "http://127.0.0.1:$PORT"
    wait_sim "$UNREACHABLE"
    codes() { # prefix people count out
        "$BIN/examples/bench_login" codes --sim "http://127.0.0.1:$UNREACHABLE" --app-id "$APP_ID" \
            --target graphql --prefix "$1" --people "$2" --count "$3" --out "$4"
    }
    codes ret- "$PEOPLE" "$PEOPLE" "$WORK/warmup.txt"
    codes ret- "$PEOPLE" "$REQUESTS" "$WORK/requests.txt"
else
    cat >>"$WORK/wxunion.toml" <<EOF

[[apps]]
app_id = "$APP_ID"
secret = "bench-secret"
kind = "official_account"
token = "$TOKEN"
encoding_aes_key = "$AES_KEY"
open_platform = "bench"
EOF
"$BIN/examples/bench_requests" --app-id "$APP_ID" --token "$TOKEN" --aes-key "$AES_KEY" \
    --kind subscribe --out "$WORK/requests.txt" --count "$REQUESTS"
"$BIN/examples/bench_requests" --app-id "$APP_ID" --token "$TOKEN" --aes-key "$AES_KEY" \
    --kind subscribe --out "$WORK/warmup.txt" --count 5000 --seq-start "$REQUESTS"
fi
"$WX_BIN" --config "$WORK/wxunion.toml" migrate >"$WORK/migrate.log" 2>&1 ||
    die "migrate failed: $(cat "$WORK/migrate.log")"

RUST_LOG=error valgrind --tool=callgrind --callgrind-out-file="$WORK/callgrind.out" \
    "$WX_BIN" --config "$WORK/wxunion.toml" serve >"$WORK/wxunion.log" 2>&1 &
WX_PID=$!
PIDS+=("$WX_PID")
wait_http "http://127.0.0.1:$PORT/healthz" 120 "$WX_PID"

SCRIPT=$ROOT/bench/callback.lua
[[ $WHAT == login ]] && SCRIPT=$ROOT/bench/replay.lua
load() { # requests_file seconds
    wrk -t 1 -c "$CONNECTIONS" -d "${2}s" --timeout 30s -s "$SCRIPT" \
        "http://127.0.0.1:$PORT" -- "$1" 1 >"$WORK/wrk.txt" 2>&1 || die "wrk failed: $(cat "$WORK/wrk.txt")"
}
if [[ $WHAT == login ]]; then
    # Each person logs in once (a first login); one the warm-up did not reach would be a
    # first login in the measured run, so the script refuses that.
    log "warm-up: $PEOPLE first logins, 40 s"
    load "$WORK/warmup.txt" 40
    sleep 2
    primed=$(users_count)
    ((primed == PEOPLE)) || die "the warm-up made $primed users, not $PEOPLE: lower BENCH_CG_PEOPLE"
else
    log "warm-up 5 s"
    load "$WORK/warmup.txt" 5
    sleep 2
fi
rows0=$(done_count)
callgrind_control -d "$WX_PID" >/dev/null # the warm-up: part 1; counters start again
log "load ${SECONDS_PER_RUN}s, $CONNECTIONS connections"
load "$WORK/requests.txt" "$SECONDS_PER_RUN"
sleep 2
callgrind_control -d "$WX_PID" >/dev/null
rows=$(($(done_count) - rows0))
grep '^BENCH ' "$WORK/wrk.txt" >&2 || true
out=$(ls -t "$WORK"/callgrind.out* | head -1)
total=$(callgrind_annotate "$out" 2>/dev/null | awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1; exit }')
[[ -n $total && $rows -gt 0 ]] || die "no totals or no rows (rows=$rows)"
[[ -n ${BENCH_CG_KEEP:-} ]] && cp "$out" "$BENCH_CG_KEEP" && log "callgrind output in $BENCH_CG_KEEP"
UNIT=callback
if [[ $WHAT == login ]]; then
    UNIT=login
    grep -q ' wraps=0' "$WORK/wrk.txt" || die "the run ran out of codes: raise BENCH_REQUESTS"
    grep -q ' failed=0' "$WORK/wrk.txt" || die "some logins failed: $(grep '^BENCH ' "$WORK/wrk.txt")"
fi
printf 'CALLGRIND %ss=%d instructions=%d per_%s=%d\n' "$UNIT" "$rows" "$total" "$UNIT" $((total / rows))
# Each function's own instructions (not its callees'), per callback. The release profile's
# fat LTO inlines across crates; BENCH_PROFILE=profiling builds without it for a finer list.
echo "instructions per $UNIT by function (self cost; top ${BENCH_TOP:-40}):"
callgrind_annotate --inclusive=no --threshold=100 "$out" 2>/dev/null | sed -n '/file:function/,$p' |
    awk -v rows="$rows" -v total="$total" 'NR > 2 && $1 ~ /^[0-9,]+$/ {
        n = $1; gsub(",", "", n); name = $0
        # The entry frames of the threads (the tokio worker loop and below) come out with
        # nearly the whole total: they were on the stack at both dumps, not costs of their own.
        if (n + 0 > total / 2) next
        sub(/^ *[0-9,]+ *\( *[0-9.]+%\) */, "", name); sub(/ \[[^]]*\]$/, "", name); sub(/^[^:]*:/, "", name)
        printf "%9.0f  %s\n", n / rows, name }' | head -"${BENCH_TOP:-40}" || true
