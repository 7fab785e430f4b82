#!/usr/bin/env bash
# Relay benchmark, end to end: Postfix's smtp-source sends 1 KB mails from N concurrent sessions
# (HELO, no pipelining, a new connection per mail) to the relay of `bouncegate serve` (release
# build, SQLite, a `networks` client: no AUTH), which delivers them to smtp-sink; and, in the same
# run, straight to smtp-sink. The relay's time runs until the last mail was delivered upstream.
# Then the queue latency (accepted → upstream 250) from the store, and, with QUEUED=N, the memory
# with N mails queued while the upstream is down.
#
#   benches/relay.sh                    # MESSAGES=10000 SESSIONS=20 RUNS=1
#   RUNS=3 QUEUED=100000 benches/relay.sh
# Needs smtp-source/smtp-sink (Debian package postfix) and python3.
set -euo pipefail
cd "$(dirname "$0")/.."
MESSAGES=${MESSAGES:-10000}
SESSIONS=${SESSIONS:-20}
RUNS=${RUNS:-1}
QUEUED=${QUEUED:-0}
PORT=${PORT:-25450}
SINK_PORT=$((PORT + 1))
INBOUND_PORT=$((PORT + 2))
DEAD_PORT=$((PORT + 3))

cargo build --release --locked -q
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

python3 - "$work/mail.eml" <<'PY'
import sys
body = ("Hello, this is the November newsletter. " * 30)[:900]
open(sys.argv[1], "w").write(
    "From: news@bench.example\r\nTo: reader@example.net\r\nSubject: November news\r\n"
    "X-Bouncegate-Class: promotional\r\nMIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\n"
    + body + "\r\n")
PY

config() { # upstream-port
  cat > "$work/bouncegate.toml" <<TOML
[database]
url = "sqlite://$work/bouncegate.db"
[inbound]
listen = "127.0.0.1:$INBOUND_PORT"
domain = "bounces.example.org"
[relay]
listen = "127.0.0.1:$PORT"
upstream = "127.0.0.1:$1"
upstream_connections = 20
retry_schedule = ["1h"]
[relay.limits]
max_connections_per_ip = 5000
max_connections = 5000
[[relay.clients]]
networks = ["127.0.0.1/32"]
company = "bench"
[[companies]]
id = "bench"
TOML
}

start() {
  RUST_LOG=warn ./target/release/bouncegate --config "$work/bouncegate.toml" serve 2>>"$work/serve.log" &
  serve_pid=$!
  pids+=("$serve_pid")
  for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
    sleep 0.1
  done
}

/usr/sbin/smtp-sink -c -u root "127.0.0.1:$SINK_PORT" 1000 >/dev/null 2>&1 &
pids+=("$!")
sleep 0.5
config "$SINK_PORT"
start

delivered() {
  python3 -c "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute(\"select count(*) from queue where state='delivered'\").fetchone()[0])" "$work/bouncegate.db"
}

echo "smtp-source: $MESSAGES mails of $(wc -c <"$work/mail.eml") bytes, $SESSIONS sessions, a new connection per mail"
for run in $(seq 1 "$RUNS"); do
  [ "$RUNS" -gt 1 ] && echo "run $run of $RUNS"
  start_s=$(date +%s.%N)
  /usr/sbin/smtp-source -s "$SESSIONS" -m "$MESSAGES" -F "$work/mail.eml" -f news@bench.example -t reader@example.net "127.0.0.1:$SINK_PORT"
  end_s=$(date +%s.%N)
  direct=$(python3 -c "import sys; print(int(sys.argv[3])/(float(sys.argv[2])-float(sys.argv[1])))" "$start_s" "$end_s" "$MESSAGES")
  before=$(delivered)
  start_s=$(date +%s.%N)
  /usr/sbin/smtp-source -s "$SESSIONS" -m "$MESSAGES" -F "$work/mail.eml" -f news@bench.example -t reader@example.net "127.0.0.1:$PORT"
  accepted_s=$(date +%s.%N)
  while [ "$(delivered)" -lt $((before + MESSAGES)) ]; do sleep 0.05; done
  end_s=$(date +%s.%N)
  python3 - "$start_s" "$accepted_s" "$end_s" "$MESSAGES" "$direct" <<'PY'
import sys
start, accepted, end, n, direct = map(float, sys.argv[1:])
relay = n / (end - start)
print(f"smtp-sink direct  {direct:,.0f} mails/s")
print(f"bouncegate relay  {relay:,.0f} mails/s end to end ({n/(accepted-start):,.0f}/s accepted), {100*relay/direct:.0f}% of direct")
PY
done
python3 - "$work/bouncegate.db" <<'PY'
import sqlite3, sys
from datetime import datetime
db = sqlite3.connect(sys.argv[1])
rows = db.execute("select created_at, updated_at from queue where state = 'delivered'").fetchall()
parse = lambda t: datetime.strptime(t, "%Y-%m-%dT%H:%M:%S.%fZ")
lat = sorted((parse(u) - parse(c)).total_seconds() for c, u in rows)
pick = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))]
print(f"queue latency (accepted → upstream 250) over {len(lat)} mails: p50 {pick(0.5)*1000:.0f} ms, p99 {pick(0.99)*1000:.0f} ms, max {lat[-1]*1000:.0f} ms")
PY

if [ "$QUEUED" -gt 0 ]; then
  kill "$serve_pid"; wait "$serve_pid" 2>/dev/null || true
  rm -f "$work"/bouncegate.db*
  config "$DEAD_PORT"
  start
  rss() { awk '/VmRSS/ {print $2}' "/proc/$serve_pid/status"; }
  idle=$(rss)
  /usr/sbin/smtp-source -s "$SESSIONS" -m "$QUEUED" -F "$work/mail.eml" -f news@bench.example -t reader@example.net "127.0.0.1:$PORT"
  sleep 2
  echo "memory: ${idle} KiB RSS idle, $(rss) KiB with $QUEUED mails queued while the upstream is down"
fi
