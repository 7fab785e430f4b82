#!/usr/bin/env bash
# HTTP API benchmark against `bouncegate serve` (release build, SQLite) with SUPPRESSIONS
# suppressions imported (default 1,000,000):
#   1. GET /v1/check from 50 concurrent connections, random addresses, half of them suppressed:
#      as fast as it goes (wrk), and at a fixed RATE (default 20,000/s; oha, latency corrected);
#   2. the one-click POST /u/TOKEN from 10 connections, each request a different recipient;
#   3. POST /v1/filter of FILTER addresses (default 1,000,000) streamed in and out, with the
#      server's resident memory before, and its peak (VmHWM) after.
#
#   benches/api.sh                      # SUPPRESSIONS=1000000 FILTER=1000000 DURATION=20
#   ONLY=check benches/api.sh           # the check runs only
#   RATE="10000 20000" ONLY=check ...   # the fixed-rate run at each rate, one server
#   SERVER_CPUS=0 CLIENT_CPUS=1 ...     # server and load generator pinned apart
# Needs wrk (Debian package wrk), curl and python3; oha (cargo install oha) for the fixed-rate run.
set -euo pipefail
cd "$(dirname "$0")/.."
SUPPRESSIONS=${SUPPRESSIONS:-1000000}
FILTER=${FILTER:-1000000}
DURATION=${DURATION:-20}
CLICKS=${CLICKS:-20000}
RATE=${RATE:-20000}
PORT=${PORT:-28025}
# SERVER_CPUS=0 CLIENT_CPUS=1: the server and the load generator each on their own core (taskset).
server_pin=${SERVER_CPUS:+taskset -c $SERVER_CPUS}
client_pin=${CLIENT_CPUS:+taskset -c $CLIENT_CPUS}

cargo build --release --locked -q
cargo build --release --locked -q --bench api_tokens
tokens_bin=$(ls -t target/release/deps/api_tokens-* | grep -v '\.d$' | head -n1)
work=$(mktemp -d)
server=""
cleanup() { [ -n "$server" ] && kill "$server" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
TOKEN=bench-read-token-0123456789
cat > "$work/bouncegate.toml" <<TOML
[database]
url = "sqlite://$work/bouncegate.db"
[inbound]
listen = "127.0.0.1:0"
domain = "bounces.example.net"
dns_resolver = "127.0.0.1:9"
[relay]
listen = "127.0.0.1:0"
[http]
listen = "127.0.0.1:$PORT"
tokens = [{ name = "bench", token = "$TOKEN", role = "admin" }]
[[companies]]
id = "acme"
brands = ["news", "shop"]
TOML
bg() { target/release/bouncegate --config "$work/bouncegate.toml" "$@"; }

python3 - "$work" "$SUPPRESSIONS" "$FILTER" <<'PY'
import random, sys
work, n, f = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
reasons = ["unsubscribe", "hard_bounce", "complaint", "manual"]
with open(f"{work}/suppressions.csv", "w") as out:
    out.write("email,reason,company,note\n")
    for i in range(n):
        reason = reasons[i % 4]
        company = "" if reason == "hard_bounce" else "acme"
        out.write(f"user{i}@example.org,{reason},{company},bench\n")
with open(f"{work}/filter.txt", "w") as out:
    for i in range(f):
        out.write(f"user{i * 2}@example.org\n")
PY
echo "importing $SUPPRESSIONS suppressions"
start=$(date +%s.%N)
bg import "$work/suppressions.csv" --json > "$work/import.json"
echo "  took $(python3 -c "print(round($(date +%s.%N) - $start, 1))") s: $(cat "$work/import.json" | head -c 200)"
"$tokens_bin" "sqlite://$work/bouncegate.db" "$CLICKS" > "$work/tokens.txt"

$server_pin target/release/bouncegate --config "$work/bouncegate.toml" serve > /dev/null 2> "$work/serve.log" &
server=$!
for _ in $(seq 1 100); do
    curl -fs "http://127.0.0.1:$PORT/openapi.json" >/dev/null 2>&1 && break
    sleep 0.1
done
# Resident memory in MiB: the heap and stacks (RssAnon) apart from the SQLite file pages mapped
# with mmap (RssFile), which the kernel can take back.
mem() { awk '/RssAnon/ {a=$2} /RssFile/ {f=$2} END {printf "%d MiB anonymous + %d MiB file-mapped", a/1024, f/1024}' "/proc/$server/status"; }

cat > "$work/check.lua" <<LUA
math.randomseed(os.time())
request = function()
  local i = math.random(0, 2 * $SUPPRESSIONS - 1)
  return wrk.format("GET", "/v1/check?address=user" .. i .. "%40example.org&company=acme&brand=news", {["Authorization"] = "Bearer $TOKEN"})
end
LUA
echo "GET /v1/check, 50 connections, ${DURATION}s (warm-up 5 s first)"
$client_pin wrk -t2 -c50 -d5s -s "$work/check.lua" "http://127.0.0.1:$PORT" > /dev/null
$client_pin wrk -t2 -c50 -d"${DURATION}s" --latency -s "$work/check.lua" "http://127.0.0.1:$PORT" | grep -E "Requests/sec|50%|90%|99%|Socket|Non-2xx"

if command -v oha >/dev/null 2>&1; then
    for rate in $RATE; do
        echo "GET /v1/check at a fixed $rate requests/s, 50 connections, ${DURATION}s (oha, latency corrected)"
        $client_pin oha --no-tui -z "${DURATION}s" -c 50 -q "$rate" --latency-correction \
            -H "Authorization: Bearer $TOKEN" --rand-regex-url \
            "http://127[.]0[.]0[.]1:$PORT/v1/check[?]address=user[1-9][0-9]{5}%40example[.]org&company=acme&brand=news" \
            | grep -E "Success rate|Requests/sec|50.00%|90.00%|99.00%|99.90%|\[200\]|\[4|\[5"
    done
else
    echo "(oha not installed: cargo install oha --locked; the fixed-rate run is skipped)"
fi

if [ "${ONLY:-}" = check ]; then exit 0; fi

cat > "$work/click.lua" <<LUA
local paths = {}
for line in io.lines("$work/tokens.txt") do paths[#paths + 1] = line end
local n = 0
local thread_id = 0
setup = function(thread) thread_id = thread_id + 1; thread:set("offset", thread_id * 100000) end
request = function()
  n = n + 1
  local path = paths[((offset + n) % #paths) + 1]
  return wrk.format("POST", path, {["Content-Type"] = "application/x-www-form-urlencoded"}, "List-Unsubscribe=One-Click")
end
LUA
echo "one-click POST /u/TOKEN, 10 connections, ${DURATION}s, $CLICKS different recipients"
wrk -t2 -c10 -d"${DURATION}s" --latency -s "$work/click.lua" "http://127.0.0.1:$PORT" | grep -E "Requests/sec|50%|90%|99%|Socket|Non-2xx"

echo "POST /v1/filter of $FILTER addresses"
before=$(mem)
start=$(date +%s.%N)
( while sleep 0.5; do awk '/RssAnon/ {print $2}' "/proc/$server/status"; done > "$work/anon.txt" ) &
sampler=$!
curl -s -o "$work/decisions.jsonl" --data-binary @"$work/filter.txt" -H "Authorization: Bearer $TOKEN" \
    -H "Content-Type: text/plain" "http://127.0.0.1:$PORT/v1/filter?company=acme&brand=news"
took=$(python3 -c "print(round($(date +%s.%N) - $start, 1))")
kill $sampler
echo "  peak anonymous memory while filtering: $(( $(sort -n "$work/anon.txt" | tail -n1) / 1024 )) MiB"
echo "  $took s; $(wc -l < "$work/decisions.jsonl") lines out; last: $(tail -n1 "$work/decisions.jsonl")"
echo "  server memory before: $before; after: $(mem)"
