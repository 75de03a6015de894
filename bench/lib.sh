# Shell helpers shared by bench/callback.sh, bench/login.sh, bench/callgrind.sh and
# bench/soak.sh (sourced, after the script has defined `log`, `die`, `WORK`, `PG_HOST` and
# `STARTED_PG`/`STARTED_REDIS`).

# The EXIT trap of callback.sh, login.sh and callgrind.sh: stops the processes in PIDS, drops
# the database DB if DB_CREATED=1 (unless BENCH_KEEP_DB=1), deletes the Redis keys under
# REDIS_PREFIX, stops the PostgreSQL or Redis the script started (unless
# BENCH_KEEP_SERVICES=1) and removes WORK (unless BENCH_KEEP_WORK=1); keeps the exit status.
bench_cleanup() {
    local rc=$?
    set +e
    local pid
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null
    done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null
    done
    if [[ $DB_CREATED == 1 && ${BENCH_KEEP_DB:-0} != 1 ]]; then
        psql -h "$PG_HOST" -U "$PG_USER" -d postgres -qtAc "drop database if exists $DB with (force)" >/dev/null \
            && log "dropped database $DB"
    fi
    if redis-cli ping >/dev/null 2>&1; then
        redis-cli --scan --pattern "${REDIS_PREFIX}*" | while read -r k; do redis-cli del "$k" >/dev/null; done
    fi
    if [[ $STARTED_REDIS == 1 && ${BENCH_KEEP_SERVICES:-0} != 1 ]]; then
        redis-cli shutdown nosave >/dev/null 2>&1; log "stopped the Redis this script started"
    fi
    if [[ $STARTED_PG == 1 && ${BENCH_KEEP_SERVICES:-0} != 1 ]]; then
        pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main stop
        log "stopped the PostgreSQL this script started"
    fi
    if [[ ${BENCH_KEEP_WORK:-0} == 1 ]]; then log "kept $WORK"; else rm -rf "$WORK"; fi
    exit "$rc"
}

# Writes the page cache's dirty pages out (`sync`) before a timed run, so that the kernel's
# writeback of what the script wrote before it (hundreds of MB of pre-signed requests, minted
# codes, the warm-up's rows) does not fall inside the run: PostgreSQL's WAL sync would queue
# behind it, and every request in flight with it. Logs how much was dirty and how long it took.
settle_disk() {
    local dirty t0
    dirty=$(awk '/^Dirty:/ { printf "%.0f", $2 / 1024 }' /proc/meminfo)
    t0=$(date +%s%N)
    sync
    log "sync before the run: $dirty MB dirty, written in $((($(date +%s%N) - t0) / 1000000)) ms"
}
# Waits until every wrk thread has loaded its requests: bench/wrk_common.lua's start barrier
# writes READY_FILE then (or until wrk, PID, has exited). A timed run's CPU is counted from
# there, not while wrk loads (seconds, with the servers idle). Args: ready_file pid
wait_wrk_loaded() {
    until [[ -e $1 ]] || ! kill -0 "$2" 2>/dev/null; do sleep 0.01; done
}
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
free_port() {
    local p=$1
    while ! port_free "$p"; do p=$((p + 1)); done
    echo "$p"
}
wait_http() { # url seconds pid
    local deadline=$((SECONDS + $2))
    until curl -fsS -o /dev/null "$1" 2>/dev/null; do
        kill -0 "$3" 2>/dev/null || die "process $3 exited before $1 answered (logs in $WORK)"
        ((SECONDS < deadline)) || die "$1 did not answer within $2 s"
        sleep 0.1
    done
}
# Starts the WeChat simulator (`wxunion sim`) with $WORK/wxunion.toml on 127.0.0.1:PORT,
# posting its callbacks to TARGET, logging to $WORK/sim.log; sets SIM_PID and adds it to PIDS.
# Returns at once: `wait_sim` waits until it answers. Args: binary port target
start_sim() {
    "$1" --config "$WORK/wxunion.toml" sim --listen "127.0.0.1:$2" --target "$3" >"$WORK/sim.log" 2>&1 &
    SIM_PID=$!
    PIDS+=("$SIM_PID")
}
wait_sim() { wait_http "http://127.0.0.1:$1/sim" 20 "$SIM_PID"; } # port
# CPU seconds (user+system) used so far by one process, or by every process named postgres.
cpu_of() {
    awk -v hz="$(getconf CLK_TCK)" '{ sub(/^.*\) /, ""); t += $12 + $13 } END { printf "%.2f", t / hz }' "/proc/$1/stat"
}
# The machine's CPU ticks as "total steal idle" (steal: a virtual machine's stolen time, the
# host ran something else while this guest wanted to run; idle: idle and waiting for I/O).
cpu_ticks() { awk '/^cpu / { t = 0; for (i = 2; i <= NF; i++) t += $i; print t, $9, $5 + $6 }' /proc/stat; }
# Percent of the CPU time between two cpu_ticks readings that was stolen.
steal_pct() { awk -v a="$1" -v b="$2" 'BEGIN { split(a, x, " "); split(b, y, " ");
    t = y[1] - x[1]; printf "%.1f", (t > 0 ? 100 * (y[2] - x[2]) / t : 0) }'; }
# Percent of the CPU time between two cpu_ticks readings that no process wanted (idle, I/O wait).
idle_pct() { awk -v a="$1" -v b="$2" 'BEGIN { split(a, x, " "); split(b, y, " ");
    t = y[1] - x[1]; printf "%.1f", (t > 0 ? 100 * (y[3] - x[3]) / t : 0) }'; }
# CPU seconds the machine ran anything (neither idle nor stolen) between two cpu_ticks readings.
busy_seconds() { awk -v a="$1" -v b="$2" -v hz="$(getconf CLK_TCK)" 'BEGIN { split(a, x, " ");
    split(b, y, " "); printf "%.2f", ((y[1] - x[1]) - (y[2] - x[2]) - (y[3] - x[3])) / hz }'; }
# A process's system (kernel) CPU seconds.
cpu_sys_of() {
    awk -v hz="$(getconf CLK_TCK)" '{ sub(/^.*\) /, ""); printf "%.2f", $13 / hz }' "/proc/$1/stat"
}
cpu_postgres() {
    local f
    for f in /proc/[0-9]*/stat; do
        [[ $(cat "${f%stat}comm" 2>/dev/null) == postgres ]] || continue
        cat "$f" 2>/dev/null
    done | awk -v hz="$(getconf CLK_TCK)" '{ sub(/^.*\) /, ""); t += $12 + $13 } END { printf "%.2f", t / hz }'
}
# The value of `key=` in a `BENCH key=value ...` line. Args: key line
field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<" $2"; }

# Starts PostgreSQL and Redis if they are not answering (the cleanup stops what was started).
start_services() {
    if ! pg_isready -h "$PG_HOST" -q; then
        log "starting PostgreSQL"
        pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start
        STARTED_PG=1
        for _ in $(seq 100); do pg_isready -h "$PG_HOST" -q && break; sleep 0.1; done
        pg_isready -h "$PG_HOST" -q || die "PostgreSQL is not accepting connections"
    fi
    if ! redis-cli ping >/dev/null 2>&1; then
        log "starting Redis"
        redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no >/dev/null
        STARTED_REDIS=1
        for _ in $(seq 50); do redis-cli ping >/dev/null 2>&1 && break; sleep 0.1; done
        redis-cli ping >/dev/null 2>&1 || die "Redis did not start"
    fi
    command -v curl >/dev/null || die "curl is needed"
}
need_wrk() {
    if ! command -v wrk >/dev/null; then
        log "installing wrk"
        apt-get install -y wrk >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get install -y wrk >/dev/null; }
    fi
}
