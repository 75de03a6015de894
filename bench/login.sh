#!/usr/bin/env bash
# Login throughput and latency: wxunion's loginWithCode (jscode2session at the simulator,
# link, session, audit event) on PostgreSQL + Redis, for new and for returning users, with
# the simulator's own jscode2session measured alone in the same run; then an open-loop run at
# a fixed rate that shows what wxunion adds to the simulator's latency. See bench/README.md.
# All traffic stays on 127.0.0.1 and every run is time-bounded.
set -euo pipefail

SECONDS_PER_RUN=${BENCH_SECONDS:-10}
CONNECTIONS=${BENCH_CONNECTIONS:-32}
THREADS=${BENCH_THREADS:-2}
RATE=${BENCH_RATE:-500}          # open-loop logins per second
PRIME_RATE=${BENCH_PRIME_RATE:-500} # first logins per second while priming the returning users
OPEN_SECONDS=${BENCH_OPEN_SECONDS:-20}
ROUNDS=${BENCH_OPEN_ROUNDS:-3}   # open-loop rounds, each the simulator alone then wxunion
PEOPLE=${BENCH_RETURNING:-5000}  # returning users (each logged in once before the runs)
MAX_RPS=${BENCH_MAX_RPS:-10000}  # codes minted per closed-loop login run: MAX_RPS x seconds
SIM_MAX_RPS=${BENCH_SIM_MAX_RPS:-160000} # the same for the simulator's run
SERVER_LOG=${BENCH_RUST_LOG:-error}
PG_HOST=127.0.0.1
PG_USER=postgres

APP_ID=wxbe0c4a11b1e0c4a2
SECRET=bench-login-secret

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=$ROOT/target/release
WX_BIN=${BENCH_WXUNION_BIN:-$BIN/wxunion}
DB=wxunion_bench_login_$$
REDIS_PREFIX="wxunion-bench-login-$$:"
WORK=$(mktemp -d "${BENCH_TMPDIR:-/dev/shm}/wxunion-bench-login.XXXXXX")

log() { printf '[bench] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

PIDS=()
DB_CREATED=0
STARTED_REDIS=0
STARTED_PG=0
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
trap bench_cleanup EXIT
trap 'exit 130' INT TERM


# ---- services -------------------------------------------------------------------------
start_services
need_wrk

sessions_count() { psql -h "$PG_HOST" -U "$PG_USER" -d "$DB" -tAc "select count(*) from sessions"; }
logins_count() { psql -h "$PG_HOST" -U "$PG_USER" -d "$DB" -tAc "select count(*) from events where kind = 'login'"; }
users_count() { psql -h "$PG_HOST" -U "$PG_USER" -d "$DB" -tAc "select count(*) from users"; }

# ---- build ------------------------------------------------------------------------------
if [[ ${BENCH_SKIP_BUILD:-0} != 1 ]]; then
    log "building (release)"
    (cd "$ROOT" && cargo build --release --bin wxunion --examples --quiet)
fi
for b in "$WX_BIN" "$BIN/wxunion" "$BIN/examples/bench_login"; do
    [[ -x $b ]] || die "$b is missing"
done

# ---- configuration ------------------------------------------------------------------------
PORT=$(free_port 18180)
SIM_PORT=$(free_port $((PORT + 1)))
psql -h "$PG_HOST" -U "$PG_USER" -d postgres -qtAc "create database $DB" >/dev/null
DB_CREATED=1
# One client address sends every login here: the per-client and per-app limits are off
# (BENCH_RATE_KEYS=0 leaves the keys out, for builds older than the limits).
RATE_LINES=""
[[ ${BENCH_RATE_KEYS:-1} == 1 ]] && RATE_LINES=$'login_rate_per_client = 0\nlogin_rate_per_app = 0'
cat >"$WORK/wxunion.toml" <<EOF
listen = "127.0.0.1:$PORT"
database_url = "postgres://$PG_USER@$PG_HOST:5432/$DB${BENCH_DB_URL_SUFFIX:-}"
redis_url = "redis://127.0.0.1:6379"
redis_prefix = "$REDIS_PREFIX"
wechat_api_base = "http://127.0.0.1:$SIM_PORT"
sandbox = false
$RATE_LINES
${BENCH_EXTRA_CONFIG:-}

[[apps]]
app_id = "$APP_ID"
secret = "$SECRET"
kind = "mini_program"
open_platform = "bench"
EOF

# ---- servers ------------------------------------------------------------------------------
# The simulator is always this checkout's (it mints codes in batches); WX_BIN may be older.
start_sim "$BIN/wxunion" "$SIM_PORT" "http://127.0.0.1:$PORT"
"$WX_BIN" --config "$WORK/wxunion.toml" migrate >"$WORK/migrate.log" 2>&1 \
    || die "migrate failed: $(cat "$WORK/migrate.log")"
RUST_LOG=$SERVER_LOG "$WX_BIN" --config "$WORK/wxunion.toml" serve >"$WORK/wxunion.log" 2>&1 &
PIDS+=($!); WX_PID=$!
wait_sim "$SIM_PORT"
wait_http "http://127.0.0.1:$PORT/healthz" 30 "$WX_PID"
log "wxunion on :$PORT (db $DB), simulator on :$SIM_PORT"

codes() { # target prefix people count out
    "$BIN/examples/bench_login" codes --sim "http://127.0.0.1:$SIM_PORT" --app-id "$APP_ID" \
        --secret "$SECRET" --target "$1" --prefix "$2" --people "$3" --count "$4" --out "$5"
}
run_wrk() { # label port file seconds
    local out=$WORK/wrk-$1.txt
    rm -f "$out.ready" # wrk_common.lua's start barrier: the last thread to load writes it
    wrk -t "$THREADS" -c "$CONNECTIONS" -d "${4}s" --timeout 10s --latency \
        -s "$ROOT/bench/replay.lua" "http://127.0.0.1:$2" -- "$3" "$THREADS" "$out.ready" >"$out" 2>&1 \
        || die "wrk failed: $(cat "$out")"
    grep '^first failure' "$out" >&2 || true
    grep '^BENCH ' "$out" || die "no BENCH line from wrk: $(cat "$out")"
}
delta() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
# One closed-loop run with CPU accounting; sets R_<label>. Args: label port file
measure() {
    local label=$1 port=$2 file=$3 cpu_wx0 cpu_sim0 cpu_pg0 s0 e0 line
    settle_disk
    s0=$(sessions_count); e0=$(logins_count)
    log "$label: ${SECONDS_PER_RUN}s, $CONNECTIONS connections, $THREADS wrk threads"
    run_wrk "$label" "$port" "$file" "$SECONDS_PER_RUN" >"$WORK/bench-$label.line" &
    local wrk_job=$!
    wait_wrk_loaded "$WORK/wrk-$label.txt.ready" "$wrk_job"
    cpu_wx0=$(cpu_of "$WX_PID"); cpu_sim0=$(cpu_of "$SIM_PID"); cpu_pg0=$(cpu_postgres)
    wait "$wrk_job" || die "the $label run failed (logs in $WORK with BENCH_KEEP_WORK=1)"
    line=$(cat "$WORK/bench-$label.line")
    sleep 0.5 # requests wrk abandoned at the deadline finish
    line="$line cpu_wxunion=$(delta "$cpu_wx0" "$(cpu_of "$WX_PID")")"
    line="$line cpu_sim=$(delta "$cpu_sim0" "$(cpu_of "$SIM_PID")")"
    line="$line cpu_postgres=$(delta "$cpu_pg0" "$(cpu_postgres)")"
    line="$line sessions=$(($(sessions_count) - s0)) login_events=$(($(logins_count) - e0))"
    printf -v "R_$label" '%s' "$line"
    log "$line"
}
# One open-loop run at RATE; sets O_<label>. Args: label port file
open_loop() {
    local cpu_wx0 cpu_pg0 line
    settle_disk
    cpu_wx0=$(cpu_of "$WX_PID"); cpu_pg0=$(cpu_postgres)
    log "$1: open loop, $RATE/s for ${OPEN_SECONDS}s"
    line=$("$BIN/examples/bench_login" open-loop --url "http://127.0.0.1:$2" --file "$3" \
        --rate "$RATE" --seconds "$OPEN_SECONDS" --trace "$WORK/open-$1.trace")
    line="$line cpu_wxunion=$(delta "$cpu_wx0" "$(cpu_of "$WX_PID")")"
    line="$line cpu_postgres=$(delta "$cpu_pg0" "$(cpu_postgres)")"
    printf -v "O_$1" '%s' "$line"
    log "$line"
}

# ---- closed loop: the simulator alone, new users, returning users ---------------------------
N=$((MAX_RPS * SECONDS_PER_RUN))
log "minting codes"
PRIME_SECONDS=$(((PEOPLE + PRIME_RATE - 1) / PRIME_RATE))
codes graphql ret- "$PEOPLE" $((PRIME_SECONDS * PRIME_RATE)) "$WORK/prime.txt" # each person at least once
codes sim sim- "$PEOPLE" $((SIM_MAX_RPS * SECONDS_PER_RUN)) "$WORK/sim.txt"
codes graphql new- "$N" "$N" "$WORK/new.txt"
log "priming $PEOPLE returning users"
"$BIN/examples/bench_login" open-loop --url "http://127.0.0.1:$PORT" --file "$WORK/prime.txt" \
    --rate "$PRIME_RATE" --seconds "$PRIME_SECONDS" >"$WORK/prime.out" 2>&1 || true
primed=$(users_count)
((primed == PEOPLE)) || die "priming made $primed users, not $PEOPLE; a machine that makes fewer" \
    "first logins per second than BENCH_PRIME_RATE=$PRIME_RATE needs a lower one" \
    "($(grep -v '^failed' "$WORK/prime.out" | tail -1))"

measure sim "$SIM_PORT" "$WORK/sim.txt"
measure new "$PORT" "$WORK/new.txt"
codes graphql ret- "$PEOPLE" "$N" "$WORK/returning.txt" # minted late: codes live 5 minutes
measure returning "$PORT" "$WORK/returning.txt"

# ---- open loop at RATE: the simulator alone, then wxunion (returning users), ROUNDS times ---
# One round's p99s rest on its 100 slowest answers of 10,000, and a few stalls of the machine
# (10-20 ms each) move them by milliseconds, in the simulator's run as much as in wxunion's;
# so the rounds alternate the two and the report takes the median of the rounds' differences.
M=$((RATE * OPEN_SECONDS))
((ROUNDS >= 1)) || die "BENCH_OPEN_ROUNDS must be at least 1"
for ((round = 1; round <= ROUNDS; round++)); do
    codes sim sim-open- "$PEOPLE" "$M" "$WORK/sim-open.txt"
    codes graphql ret- "$PEOPLE" "$M" "$WORK/login-open.txt"
    open_loop "sim$round" "$SIM_PORT" "$WORK/sim-open.txt"
    open_loop "login$round" "$PORT" "$WORK/login-open.txt"
done
curl -fsS "http://127.0.0.1:$PORT/metrics" >"$WORK/metrics.txt" || true

# ---- report -------------------------------------------------------------------------------
ms() { awk -v us="$1" 'BEGIN { printf "%.2f", us / 1000 }'; }
per() { awk -v c="$1" -v n="$2" 'BEGIN { if (n > 0) printf "%.0f", c * 1e6 / n; else print "-" }'; }
sum() { awk -v a="$1" -v b="$2" 'BEGIN { print a + b }'; }
# What wxunion added to a latency field (p50, p99) in this round: login run minus simulator run, ms.
added() { awk -v a="$(field "$1" "${!login_run}")" -v b="$(field "$1" "${!sim_run}")" 'BEGIN { printf "%+.2f", (a - b) / 1000 }'; }
echo
echo "loginWithCode on PostgreSQL + Redis against the simulator: ${SECONDS_PER_RUN}s per run," \
    "$CONNECTIONS connections, $THREADS wrk threads, $(nproc) CPUs, $PEOPLE returning users"
printf '%-28s %10s %8s %8s %8s %8s %10s %10s %10s\n' run "req/s" "p50 ms" "p90 ms" "p99 ms" \
    non-2xx "us/req wx" "us/req sim" "us/req pg"
status=0
for l in sim new returning; do
    r=R_$l
    n=$(field requests "${!r}")
    case $l in
        sim) label="simulator jscode2session" ;;
        new) label="loginWithCode, new users" ;;
        returning) label="loginWithCode, returning" ;;
    esac
    printf '%-28s %10s %8s %8s %8s %8s %10s %10s %10s\n' "$label" "$(field rps "${!r}")" \
        "$(ms "$(field p50 "${!r}")")" "$(ms "$(field p90 "${!r}")")" "$(ms "$(field p99 "${!r}")")" \
        "$(field non2xx "${!r}")" "$(per "$(field cpu_wxunion "${!r}")" "$n")" \
        "$(per "$(field cpu_sim "${!r}")" "$n")" "$(per "$(field cpu_postgres "${!r}")" "$n")"
    if [[ $l != sim ]]; then
        # Every answered login opened one session; a failed login (a GraphQL error) opens none.
        s=$(field sessions "${!r}")
        ok=$((n - $(field non2xx "${!r}")))
        if ((s < ok)); then
            log "FAIL: $l: $ok answered, only $s sessions opened (logins failed; see $WORK)"; status=1
        fi
    fi
    [[ $(field failed "${!r}") == 0 ]] || { log "FAIL: $l: $(field failed "${!r}") answers were errors"; status=1; }
    [[ $(field wraps "${!r}") == 0 ]] || { log "FAIL: $l ran out of codes (raise BENCH_MAX_RPS)"; status=1; }
done
echo
echo "open loop at $RATE/s for ${OPEN_SECONDS}s, $ROUNDS round(s) (latency from each request's scheduled start):"
printf '%-28s %8s %8s %8s %8s %8s %10s %10s\n' run sent ok "p50 ms" "p99 ms" "max ms" "+p50 ms" "+p99 ms"
added99=()
cpu_wx=0; cpu_pg=0; sent_all=0
for ((round = 1; round <= ROUNDS; round++)); do
    sim_run=O_sim$round; login_run=O_login$round
    for r in "$sim_run" "$login_run"; do
        printf '%-28s %8s %8s %8s %8s %8s' "${r#O_}" "$(field sent "${!r}")" "$(field ok "${!r}")" \
            "$(ms "$(field p50 "${!r}")")" "$(ms "$(field p99 "${!r}")")" "$(ms "$(field max "${!r}")")"
        [[ $(field sent "${!r}") == "$(field ok "${!r}")" ]] || { log "FAIL: ${r#O_}: not every request succeeded"; status=1; }
        if [[ $r == "$login_run" ]]; then
            add99=$(added p99)
            added99+=("$add99")
            printf ' %10s %10s' "$(added p50)" "$add99"
            cpu_wx=$(sum "$cpu_wx" "$(field cpu_wxunion "${!login_run}")")
            cpu_pg=$(sum "$cpu_pg" "$(field cpu_postgres "${!login_run}")")
            sent_all=$((sent_all + $(field sent "${!login_run}")))
        fi
        printf '\n'
    done
done
median99=$(printf '%s\n' "${added99[@]}" | sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }' | xargs printf '%+.2f')
echo "wxunion adds at $RATE/s, p99: ${added99[*]} ms by round; median $median99 ms (goal: at most +2 ms)"
echo "cpu per login at $RATE/s: wxunion $(per "$cpu_wx" "$sent_all") us, postgres $(per "$cpu_pg" "$sent_all") us"
exit "$status"
