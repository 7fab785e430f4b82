#!/usr/bin/env bash
# Retention purge of 10M rows beside live traffic (issue 12): `bouncegate serve` (release build,
# SQLite) on a database holding 8M events past events_days, 1M send records past sends_days and
# 1M raw bounce mails past bounce_mail_days (all due), beside 1M standing suppressions and 200k
# recent events (kept). benches/purge_load.rs sends received mail over SMTP (SMTP_RATE/s, one
# session each; the latency of the 250 after DATA, i.e. the commit) and GET /v1/check (CHECK_RATE/s)
# at fixed rates, measured from when each was due:
#   1. idle: LOAD_SECONDS of load, no purge;
#   2. the dry run's time (POST /v1/purge?dry_run=true);
#   3. during: the purge runs inside serve (POST /v1/purge), LOAD_SECONDS of the same load in the
#      middle of it; then the purge's time and rows per second.
#
#   benches/purge.sh       # EVENTS=8000000 SENDS=1000000 EVIDENCE=1000000 SMTP_RATE=50 CHECK_RATE=2000
# Needs python3 and curl. The database takes about 8 GB in a temporary folder (WORK to choose).
set -euo pipefail
cd "$(dirname "$0")/.."
EVENTS=${EVENTS:-8000000}
SENDS=${SENDS:-1000000}
EVIDENCE=${EVIDENCE:-1000000}
SUPPRESSIONS=${SUPPRESSIONS:-1000000}
RECENT=${RECENT:-200000}
export SMTP_RATE=${SMTP_RATE:-50} CHECK_RATE=${CHECK_RATE:-2000}
LOAD_SECONDS=${LOAD_SECONDS:-30}
SMTP_PORT=${SMTP_PORT:-25260}
HTTP_PORT=${HTTP_PORT:-28035}
BATCH=${BATCH:-50}
PAUSE_MS=${PAUSE_MS:-10}

cargo build --release --locked -q
cargo build --release --locked -q --bench purge_load
load_bin=$(ls -t target/release/deps/purge_load-* | grep -v '\.d$' | head -n1)
work=$(mktemp -d ${WORK:+-p "$WORK"})
server=""
cleanup() { [ -n "$server" ] && kill "$server" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
export TOKEN=bench-admin-token-0123456789 SMTP=127.0.0.1:$SMTP_PORT HTTP=127.0.0.1:$HTTP_PORT
cat > "$work/bouncegate.toml" <<TOML
[database]
url = "sqlite://$work/bouncegate.db"
[inbound]
listen = "127.0.0.1:$SMTP_PORT"
domain = "bounces.example.org"
dns_resolver = "127.0.0.1:9"
trust_unsigned_bounces = true
[relay]
listen = "127.0.0.1:0"
[http]
listen = "127.0.0.1:$HTTP_PORT"
tokens = [{ name = "bench", token = "$TOKEN", role = "admin" }]
[retention]
daily = false
batch_size = $BATCH
batch_pause_ms = $PAUSE_MS
[[companies]]
id = "acme"
domains = ["acme.example"]
brands = ["news"]
TOML
./target/release/bouncegate --config "$work/bouncegate.toml" db migrate >/dev/null
echo "filling: $EVENTS old events, $SENDS old sends, $EVIDENCE old bounce mails, $SUPPRESSIONS standing suppressions, $RECENT recent events" >&2
python3 benches/purge_fill.py "$work/bouncegate.db" "$EVENTS" "$SENDS" "$EVIDENCE" "$SUPPRESSIONS" "$RECENT"
du -sh "$work"/bouncegate.db* >&2

RUST_LOG=warn ./target/release/bouncegate --config "$work/bouncegate.toml" serve 2>"${SERVE_LOG:-$work/serve.log}" &
server=$!
for _ in $(seq 1 300); do
  curl -fs -o /dev/null "http://$HTTP/metrics" && break
  sleep 0.2
done
DURATION=5 "$load_bin" warm-up >/dev/null
DURATION=$LOAD_SECONDS "$load_bin" idle

started=$(date +%s.%N)
curl -fs -X POST -H "Authorization: Bearer $TOKEN" "http://$HTTP/v1/purge?dry_run=true" >"$work/dry.json"
echo "{\"label\": \"dry run\", \"seconds\": $(echo "$(date +%s.%N) - $started" | bc), \"total\": $(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["total"])' "$work/dry.json")}"

started=$(date +%s.%N)
curl -s -o "$work/purge.json" -w '%{http_code}' -X POST -H "Authorization: Bearer $TOKEN" "http://$HTTP/v1/purge" >"$work/purge.status" &
purge=$!
# The WAL's largest size while the purge runs (it must stay bounded).
( max=0; while kill -0 "$purge" 2>/dev/null; do
    size=$(stat -c %s "$work/bouncegate.db-wal" 2>/dev/null || echo 0)
    [ "$size" -gt "$max" ] && max=$size && echo "$max" >"$work/wal.max"
    sleep 1
  done ) &
sleep 10
DURATION=$LOAD_SECONDS "$load_bin" during-purge
kill -0 "$purge" 2>/dev/null || echo "warning: the purge ended before the load did; raise EVENTS or lower LOAD_SECONDS" >&2
wait "$purge" || true
took=$(echo "$(date +%s.%N) - $started" | bc)
if [ "$(cat "$work/purge.status")" != "200" ]; then
  echo "the purge failed after $took s: HTTP $(cat "$work/purge.status")" >&2
  cat "$work/purge.json" >&2; echo >&2
  tail -20 "${SERVE_LOG:-$work/serve.log}" >&2
  exit 1
fi
python3 - "$work/purge.json" "$took" "$(cat "$work/wal.max" 2>/dev/null || echo 0)" <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))
took = float(sys.argv[2])
rules = {r["rule"]: r["rows"] for r in report["rules"] if r["rows"]}
print(json.dumps({"label": "purge", "seconds": round(took, 1), "rows": report["total"],
                  "rows_per_second": round(report["total"] / took), "rules": rules,
                  "largest_wal_mib": round(int(sys.argv[3]) / 1048576)}))
PY
du -sh "$work"/bouncegate.db* >&2
