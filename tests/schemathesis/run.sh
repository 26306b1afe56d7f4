#!/usr/bin/env bash
# API fuzzing with schemathesis against the real server's /openapi.json, with the right
# credentials for each group of routes: an agency certificate (agency routes), a citizen's
# dev-issuer token (citizen routes), the dev auditor certificate (auditor routes), none
# (operations). Checks: no 5xx, status codes, content types, headers and bodies as the
# document says, invalid input refused with 4xx, undeclared methods answered 405 with Allow,
# and (hooks.py) no response body carrying a citizen's value.
#
# usage: tests/schemathesis/run.sh [EXAMPLES_PER_OPERATION]   (needs `pip install schemathesis`
# and the debug binaries: cargo build --workspace --bins)
#
# Left out: positive_data_acceptance (SPEC answers 400 unknown_purpose / unknown_field to
# well-formed identifiers the policy does not know, so "schema-valid means 2xx/403/404" does
# not hold by contract) and the stateful checks that need OpenAPI links.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
target=${CARGO_TARGET_DIR:-$root/target}
n=${1:-25}
work=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$target/debug/vault-server" dev --data "$work/data" --listen "127.0.0.1:$port" >"$work/server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true; wait $server 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 1 300); do
  curl -sf --cacert "$work/data/dev/ca.pem" "https://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
  sleep 0.1
done
dev=$work/data/dev
self=$(head -1 "$dev/citizens.jsonl" | python3 -c 'import json,sys; print(json.loads(sys.stdin.readline())["citizen_id"])')
citizen_token=$("$target/debug/vaultctl" dev token --data "$work/data" --citizen "$self")
checks=not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance,negative_data_rejection,missing_required_header,unsupported_method,no_citizen_value
export VAULT_CITIZENS="$dev/citizens.jsonl" VAULT_SELF="$self" SCHEMATHESIS_HOOKS=hooks
cd "$here"
# schemathesis caches failing cases under .schemathesis/ (response bodies included, such as
# the record the control run reads) and replays them: start from none, leave none behind.
rm -rf "$here/.schemathesis"
trap 'kill $server 2>/dev/null || true; wait $server 2>/dev/null || true; rm -rf "$work" "$here/.schemathesis" "$here/.hypothesis"' EXIT
total=0
st() {
  local name=$1; shift
  echo "== schemathesis: $name"
  local out
  if ! out=$(schemathesis run "https://127.0.0.1:$port/openapi.json" --tls-verify "$dev/ca.pem" \
      --checks "$checks" -n "$n" --phases examples,coverage,fuzzing --seed 20261123 \
      --suppress-health-check all "$@" 2>&1); then
    echo "$out" | tail -80
    echo "schemathesis: $name FAILED" >&2
    exit 1
  fi
  echo "$out" | grep -E "generated|passed" | tail -2
  local g
  g=$(echo "$out" | grep -oE '[0-9]+ generated' | tail -1 | cut -d' ' -f1)
  total=$((total + ${g:-0}))
}
st "agency routes (agency certificate)" \
  --request-cert "$dev/agencies/bhxh-tphcm.pem" --request-cert-key "$dev/agencies/bhxh-tphcm.key" \
  --include-path-regex '^/v1/(purposes|grants|citizens)'
st "agency writes (source-of-truth certificate)" \
  --request-cert "$dev/agencies/cong-an-tphcm-cu-tru.pem" --request-cert-key "$dev/agencies/cong-an-tphcm-cu-tru.key" \
  --include-path-regex '^/v1/citizens/\{citizen_id\}$'
st "citizen routes (citizen token)" -H "Authorization: Bearer $citizen_token" \
  --include-path-regex '^/v1/me/'
st "auditor routes (auditor certificate)" \
  --request-cert "$dev/auditor.pem" --request-cert-key "$dev/auditor.key" \
  --include-path-regex '^/v1/audit/'
st "operations (no credentials)" --include-path-regex '^/(healthz|readyz|metrics|openapi.json)$'
# Control: the value check must catch the citizen's own record when it is not told whose it is.
echo "== control: no_citizen_value flags GET /v1/me/record when the reader is not the owner"
if VAULT_SELF=nobody schemathesis run "https://127.0.0.1:$port/openapi.json" --tls-verify "$dev/ca.pem" \
    --checks no_citizen_value -n 1 --phases examples,fuzzing -H "Authorization: Bearer $citizen_token" \
    --include-path-regex '^/v1/me/record$' >/dev/null 2>&1; then
  echo "schemathesis: the citizen-value check did not fire on a record" >&2
  exit 1
fi
if grep -q '"level":"ERROR"\|panicked' "$work/server.log"; then
  grep '"level":"ERROR"\|panicked' "$work/server.log" | head -5
  echo "schemathesis: the server logged errors" >&2
  exit 1
fi
echo "schemathesis: $total test cases, no failures"
