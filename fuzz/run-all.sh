#!/usr/bin/env bash
# usage: fuzz/run-all.sh [SECONDS] [TARGET...]   (default 600 s, every target)
# Runs each fuzz target for SECONDS, one after another, growing the committed corpus, then
# minimizes that corpus (cargo fuzz cmin) and prints the target's executions and corpus size.
# Needs nightly and cargo-fuzz (cargo install cargo-fuzz). A failing input is left in
# fuzz/artifacts/<target>/; copy it into fuzz/corpus/<target>/ with the fix so the replay in
# the test suite keeps it fixed.
set -euo pipefail
cd "$(dirname "$0")"
secs=${1:-600}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(token checkpoint envelope policy import_row request_json)
for t in "${targets[@]}"; do
  log=$(mktemp)
  cargo +nightly fuzz run -O "$t" "corpus/$t" -- -max_total_time="$secs" -print_final_stats=1 \
    -rss_limit_mb=4096 >"$log" 2>&1 || { tail -40 "$log"; echo "FAILED: $t"; exit 1; }
  runs=$(grep -m1 'stat::number_of_executed_units' "$log" | awk '{print $2}')
  before=$(ls "corpus/$t" | wc -l)
  cargo +nightly fuzz cmin -O "$t" "corpus/$t" >/dev/null 2>&1
  echo "$t: $runs executions in ${secs} s, corpus $before inputs, $(ls "corpus/$t" | wc -l) after cmin"
  rm -f "$log"
done
