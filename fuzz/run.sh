#!/usr/bin/env bash
# Runs one fuzz target for a number of executions, under nice and with one job:
#
#   fuzz/run.sh TARGET [RUNS] [libFuzzer flags...]
#
# TARGET is callback_raw, callback_signed, graphql_request or config (see README.md,
# "Fuzzing"); RUNS defaults to 10 000 000. The committed seeds (fuzz/seeds/TARGET) are read,
# the corpus grows in fuzz/corpus/TARGET, crashes land in fuzz/artifacts/TARGET and the log in
# fuzz/logs/TARGET.log (none of them committed). Stable Rust: cargo fuzz passes nightly flags
# (-Zsanitizer=address), which RUSTC_BOOTSTRAP=1 lets the stable compiler take.
set -euo pipefail
cd "$(dirname "$0")"

target=${1:?usage: fuzz/run.sh callback_raw|callback_signed|graphql_request|config [RUNS] [libFuzzer flags]}
runs=${2:-10000000}
shift $(($# < 2 ? $# : 2))

command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
export RUSTC_BOOTSTRAP=1
# Release build with debug assertions and overflow checks (-a), AddressSanitizer (the
# default), 16 codegen units for a shorter build of the large dependency tree.
build=(-O -a --codegen-units 16)

mkdir -p "corpus/$target" "artifacts/$target" logs
nice -n 19 cargo fuzz build "${build[@]}" "$target"
# -timeout: an input running 10 s is a hang; -rss_limit_mb / -malloc_limit_mb: a process over
# 2 GiB, or any one allocation over 512 MiB, is a finding.
nice -n 19 cargo fuzz run "${build[@]}" "$target" "corpus/$target" "seeds/$target" -- \
  -runs="$runs" -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=512 \
  -print_final_stats=1 "$@" 2>&1 | tee "logs/$target.log"
