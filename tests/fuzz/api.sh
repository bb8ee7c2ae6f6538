#!/usr/bin/env bash
# Fuzzes the API of a real `kflow serve` with schemathesis, from the OpenAPI
# document it serves: no request may get a 5xx or crash the server, and every
# answer must have a status and shape the document allows.
#
#   bash tests/fuzz/api.sh [MAX_EXAMPLES]        # CI: 30 per operation; longer: 1000
#
# Needs schemathesis (PyPI) in $SCHEMATHESIS (default: `st` on PATH) and a
# built `kflow` in $KFLOW (default: target/debug/kflow).
set -euo pipefail
cd "$(dirname "$0")/../.."
max="${1:-30}"
kflow="${KFLOW:-target/debug/kflow}"
st="${SCHEMATHESIS:-st}"
work="$(mktemp -d)"
trap 'kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; rm -rf "$work"' EXIT

cp docs/flows/triggers.kflow "$work/"
"$kflow" user add admin --role admin --no-password --state "$work/st" >/dev/null
token="$("$kflow" token create admin --state "$work/st" 2>/dev/null | tail -n 1)"
RELEASE_HOOK_SECRET=fuzz "$kflow" serve "$work/triggers.kflow" --listen 127.0.0.1:0 --state "$work/st" \
  >"$work/out" 2>"$work/err" &
server=$!
for _ in $(seq 100); do
  grep -q 'listening on' "$work/out" 2>/dev/null && break
  sleep 0.1
done
url="$(sed -n 's/.*listening on //p' "$work/out")"
[ -n "$url" ] || { cat "$work/err"; echo "the server did not start" >&2; exit 1; }

# One worker: with two threads, hypothesis parses lambda sources in both at
# once, which CPython 3.11 before 3.11.8 can fail ("AST constructor recursion
# depth mismatch") — an error of the fuzzer, not of the server.
"$st" run "$url/api/v1/openapi.json" \
  --header "Authorization: Bearer $token" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
  --max-examples "$max" \
  --phases examples,coverage,fuzzing \
  --workers 1 \
  --suppress-health-check all \
  --no-color
# The server lived through it.
kill -0 "$server"
curl -fsS "$url/healthz" >/dev/null
echo "the API fuzz run passed ($max examples per operation)"
