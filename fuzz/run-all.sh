#!/usr/bin/env bash
# Runs every fuzz target for SECONDS (default 600) one after another, growing the committed
# corpus, and prints each target's executions and corpus size. Needs nightly and cargo-fuzz.
set -euo pipefail
cd "$(dirname "$0")"
secs=${1:-600}
for t in token checkpoint envelope policy import_row request_json; do
  log=$(mktemp)
  cargo +nightly fuzz run -O "$t" "corpus/$t" -- -max_total_time="$secs" -print_final_stats=1 \
    -rss_limit_mb=4096 >"$log" 2>&1 || { tail -40 "$log"; echo "FAILED: $t"; exit 1; }
  runs=$(grep -m1 'stat::number_of_executed_units' "$log" | awk '{print $2}')
  echo "$t: $runs executions in ${secs} s, corpus $(ls "corpus/$t" | wc -l) inputs"
  rm -f "$log"
done
