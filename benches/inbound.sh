#!/usr/bin/env bash
# Inbound ingestion benchmark: Postfix's smtp-source sends a ~1 KB DSN from N concurrent sessions,
# a new connection per mail, to `bouncegate serve` (release build, SQLite, 250 only after commit)
# and, in the same run, to smtp-sink (the do-nothing server: the practical limit of this machine).
# Then opens 1,000 idle connections to bouncegate and reports its memory.
#
#   benches/inbound.sh            # MESSAGES=20000 SESSIONS=20 RUNS=1 by default
#   RUNS=3 benches/inbound.sh     # three runs in a row (each sink, then bouncegate)
# Needs smtp-source/smtp-sink (Debian package postfix) and python3.
set -euo pipefail
cd "$(dirname "$0")/.."
MESSAGES=${MESSAGES:-20000}
SESSIONS=${SESSIONS:-20}
RUNS=${RUNS:-1}
PORT=${PORT:-25250}
SINK_PORT=$((PORT + 1))

cargo build --release --locked -q
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

printf '%s\r\n' \
  "From: MAILER-DAEMON@mx.example.net" "To: news@acme.example" "Subject: Undelivered Mail Returned to Sender" \
  "MIME-Version: 1.0" "Content-Type: multipart/report; report-type=delivery-status; boundary=\"B\"" "" \
  "--B" "Content-Type: text/plain" "" \
  "<bench@example.net>: host mx.example.net[192.0.2.1] said: 550 5.1.1 <bench@example.net>: Recipient" \
  "    address rejected: User unknown in virtual mailbox table (in reply to RCPT TO command)" "" \
  "--B" "Content-Type: message/delivery-status" "" "Reporting-MTA: dns; mx.example.net" "" \
  "Final-Recipient: rfc822; bench@example.net" "Action: failed" "Status: 5.1.1" \
  "Diagnostic-Code: smtp; 550 5.1.1 <bench@example.net>: Recipient address rejected: User unknown" "" \
  "--B" "Content-Type: text/rfc822-headers" "" "From: news@acme.example" "To: bench@example.net" \
  "Message-ID: <bench-1@acme.example>" "Subject: Newsletter" "" "--B--" > "$work/dsn.eml"

cat > "$work/bouncegate.toml" <<TOML
[database]
url = "sqlite://$work/bouncegate.db"
[relay]
listen = "127.0.0.1:0"
[inbound]
listen = "127.0.0.1:$PORT"
domain = "bounces.example.org"
trust_unsigned_bounces = true
[inbound.limits]
max_connections_per_ip = 5000
max_connections = 5000
[[companies]]
id = "acme"
domains = ["acme.example"]
TOML

RUST_LOG=warn ${PROFILE:-} ./target/release/bouncegate --config "$work/bouncegate.toml" serve 2>"$work/serve.log" &
serve_pid=$!
pids+=("$serve_pid")
for _ in $(seq 1 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
  sleep 0.1
done

/usr/sbin/smtp-sink -c -u root "127.0.0.1:$SINK_PORT" 1000 >/dev/null 2>&1 &
pids+=("$!")
sleep 0.5

rate() { # name port
  local start end
  start=$(date +%s.%N)
  /usr/sbin/smtp-source -s "$SESSIONS" -m "$MESSAGES" -F "$work/dsn.eml" -f "" -t "bounces@bounces.example.org" "127.0.0.1:$2"
  end=$(date +%s.%N)
  python3 -c "import sys; s=float(sys.argv[2])-float(sys.argv[1]); print(f'{sys.argv[3]:<12} {int(sys.argv[4])} mails in {s:.2f} s = {int(sys.argv[4])/s:,.0f} mails/s')" "$start" "$end" "$1" "$MESSAGES"
}

# The server's own CPU time (user + system), steadier than the rate on a shared 2-core machine.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$serve_pid/stat"; }
ticks_per_second=$(getconf CLK_TCK)

echo "smtp-source: $MESSAGES DSNs of $(wc -c <"$work/dsn.eml") bytes, $SESSIONS sessions, a new connection per mail"
for run in $(seq 1 "$RUNS"); do
  [ "$RUNS" -gt 1 ] && echo "run $run of $RUNS"
  rate smtp-sink "$SINK_PORT"
  before_cpu=$(cpu_ticks)
  rate bouncegate "$PORT"
  after_cpu=$(cpu_ticks)
  python3 -c "import sys; t=(int(sys.argv[2])-int(sys.argv[1]))/int(sys.argv[3]); print(f'bouncegate CPU: {t:.2f} s, {1e6*t/int(sys.argv[4]):,.0f} µs per mail')" \
    "$before_cpu" "$after_cpu" "$ticks_per_second" "$MESSAGES"
done
python3 - "$work/bouncegate.db" "$MESSAGES" <<'PY'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
evidence = db.execute("select count(*) from evidence").fetchone()[0]
events = db.execute("select count(*) from events").fetchone()[0]
print(f"stored: {evidence} evidence rows, {events} events (sent {sys.argv[2]} per run)")
PY

rss() { awk '/VmRSS/ {print $2}' "/proc/$serve_pid/status"; }
before=$(rss)
python3 - "$PORT" <<'PY' &
import socket, sys, time
socks = []
for _ in range(1000):
    s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
    s.recv(512)
    socks.append(s)
time.sleep(4)
PY
idle_pid=$!
sleep 3
during=$(rss)
wait "$idle_pid" || true
echo "memory: ${before} KiB RSS before, ${during} KiB with 1,000 idle connections ($(( (during - before) / 1000 )) KiB each)"
