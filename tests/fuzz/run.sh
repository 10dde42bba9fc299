#!/usr/bin/env bash
# Fuzzes every parser of outside input, each target for SECONDS (default 600),
# as many at once as there are cores, then minimises each corpus in place.
#
#   bash tests/fuzz/run.sh              # every target, 10 minutes each
#   bash tests/fuzz/run.sh 60 http kube # two targets, a minute each
#
# Stable Rust: cargo-fuzz with `--sanitizer none` (libFuzzer's coverage, no
# AddressSanitizer; safe Rust needs none). A crash leaves its input under
# tests/fuzz/artifacts/<target>/; copy it to tests/fuzz/regressions/<target>/
# once fixed, and `cargo test --test fuzz_replay` replays it from then on.
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds=${1:-600}
shift || true
all=(http api desired manifest kube lease update outbox config)
targets=("${@:-${all[@]}}")
[ ${#targets[@]} -gt 0 ] || targets=("${all[@]}")

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz: installing cargo-fuzz" >&2
  cargo install cargo-fuzz --locked
fi
fuzz=(cargo fuzz run --fuzz-dir tests/fuzz --sanitizer none --release)
echo "fuzz: building the targets" >&2
cargo fuzz build --fuzz-dir tests/fuzz --sanitizer none --release >&2

logs=tests/fuzz/logs
mkdir -p "$logs"
jobs=$(nproc)
run_one() {
  local t=$1 max_len=16384
  [ "$t" = http ] && max_len=70000
  "${fuzz[@]}" "$t" -- -max_total_time="$seconds" -max_len="$max_len" \
    -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 >"$logs/$t.log" 2>&1
}
status=0
running=0
for t in "${targets[@]}"; do
  echo "fuzz: $t for ${seconds}s" >&2
  run_one "$t" &
  running=$((running + 1))
  if [ "$running" -ge "$jobs" ]; then
    wait -n || status=1
    running=$((running - 1))
  fi
done
while [ "$running" -gt 0 ]; do
  wait -n || status=1
  running=$((running - 1))
done

printf '%-9s %12s %10s %8s %s\n' target runs exec/s corpus result
for t in "${targets[@]}"; do
  log=$logs/$t.log
  runs=$(grep -oE 'stat::number_of_executed_units: +[0-9]+' "$log" | awk '{print $2}' | tail -1)
  rate=$(grep -oE 'stat::average_exec_per_sec: +[0-9]+' "$log" | awk '{print $2}' | tail -1)
  result=clean
  grep -qE 'panicked|deadly signal|SUMMARY: libFuzzer|Test unit written' "$log" && result="CRASH (see $log)"
  cargo fuzz cmin --fuzz-dir tests/fuzz --sanitizer none --release "$t" >/dev/null 2>&1 || true
  corpus=$(find "tests/fuzz/corpus/$t" -type f | wc -l)
  printf '%-9s %12s %10s %8s %s\n' "$t" "${runs:-?}" "${rate:-?}" "$corpus" "$result"
done
exit $status
