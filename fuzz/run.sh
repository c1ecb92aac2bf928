#!/usr/bin/env bash
# Fuzzes every parser that reads untrusted input, SECONDS each (default 600), two at a time.
#   ./fuzz/run.sh          # 10 minutes per target
#   ./fuzz/run.sh 60       # a quick pass
# Needs cargo-fuzz (cargo install cargo-fuzz). RUSTC_BOOTSTRAP lets the stable toolchain
# build libFuzzer's instrumentation; no sanitizer is needed for ivmfa-core, which has no
# unsafe code. Crashes land in fuzz/artifacts/<target>/; each becomes a regression test.
set -euo pipefail
cd "$(dirname "$0")"
seconds=${1:-600}
export RUSTC_BOOTSTRAP=1
targets=(config store_files answer google_file)
cargo fuzz build -s none "${targets[@]/#/}" >/dev/null 2>&1 || cargo fuzz build -s none
run() {
    mkdir -p "corpus/$1"
    cargo fuzz run -s none "$1" "corpus/$1" "seeds/$1" -- -max_total_time="$seconds" \
        -max_len=4096 -print_final_stats=1 2>&1 | grep -E "stat::number_of_executed_units|stat::peak_rss_mb|SUMMARY|crash-|Done" \
        | sed "s/^/$1: /"
}
for ((i = 0; i < ${#targets[@]}; i += 2)); do
    run "${targets[i]}" &
    [ $((i + 1)) -lt ${#targets[@]} ] && run "${targets[i + 1]}" &
    wait
done
