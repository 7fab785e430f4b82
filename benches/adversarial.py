#!/usr/bin/env python3
"""Adversarial checks of the inbound listener, as an attacker would try them, against the release
binary (`bouncegate serve` on a fresh SQLite store). Rerun it after changes to the SMTP side:

    python3 benches/adversarial.py            # builds the release binary first
    TRICKLERS=2000 KILL_MAILS=2000 python3 benches/adversarial.py

It prints one line per check and, at the end, the figures BENCHMARKS.md records: idle memory per
connection, how long 2,000 trickling connections keep a normal client out, and what a SIGKILL
under load loses. Exit 1 when a check fails. Standard library only.
"""

import asyncio
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BINARY = os.path.join(ROOT, "target", "release", "bouncegate")
PORT = int(os.environ.get("PORT", "25350"))
TRICKLERS = int(os.environ.get("TRICKLERS", "2000"))
IDLE = int(os.environ.get("IDLE", "2000"))
KILL_MAILS = int(os.environ.get("KILL_MAILS", "2000"))
COMMAND_TIMEOUT = 5
DOMAIN = "bounces.example.org"

failures = []


def check(name, ok, detail=""):
    print(f"{'ok  ' if ok else 'FAIL'} {name}{': ' + detail if detail else ''}", flush=True)
    if not ok:
        failures.append(name)


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class Gateway:
    def __init__(self, work):
        self.work = work
        self.db = os.path.join(work, "bouncegate.db")
        self.config = os.path.join(work, "bouncegate.toml")
        with open(self.config, "w") as f:
            f.write(f"""[database]
url = "sqlite://{self.db}"
[relay]
listen = "127.0.0.1:0"
[inbound]
listen = "127.0.0.1:{PORT}"
domain = "{DOMAIN}"
trust_unsigned_bounces = true
dns_resolver = "127.0.0.1:9"
[inbound.limits]
max_connections = {max(TRICKLERS, IDLE)}
max_connections_per_ip = {max(TRICKLERS, IDLE)}
command_timeout_secs = {COMMAND_TIMEOUT}
[[companies]]
id = "acme"
domains = ["acme.example"]
brands = ["news"]
""")
        self.process = None

    def start(self):
        self.process = subprocess.Popen(
            [BINARY, "--config", self.config, "serve"],
            stderr=open(os.path.join(self.work, "serve.log"), "a"),
            env={**os.environ, "RUST_LOG": "warn"},
        )
        for _ in range(200):
            try:
                with socket_connect():
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("the gateway did not start")

    def stop(self, sig=signal.SIGTERM):
        self.process.send_signal(sig)
        self.process.wait(timeout=60)

    def cli(self, *args):
        return subprocess.run(
            [BINARY, "--config", self.config, *args], capture_output=True, text=True
        )


def socket_connect():
    import socket

    return socket.create_connection(("127.0.0.1", PORT), timeout=2)


async def session(commands, data=None):
    """One SMTP session; returns every reply line (the last line of each reply)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", PORT)
    replies = [await read_reply(reader)]
    if not replies[0].startswith("220"):
        writer.close()
        return replies
    try:
        for command in commands:
            writer.write(command.encode() + b"\r\n")
            await writer.drain()
            reply = await read_reply(reader)
            replies.append(reply)
            if command == "DATA" and reply.startswith("354"):
                writer.write(data + b".\r\n")
                await writer.drain()
                replies.append(await read_reply(reader))
            if not reply[:1] in ("2", "3"):
                break
        writer.write(b"QUIT\r\n")
        await writer.drain()
    finally:
        writer.close()
    return replies


async def read_reply(reader):
    while True:
        line = (await asyncio.wait_for(reader.readline(), 30)).decode(errors="replace")
        if len(line) < 4 or line[3] != "-":
            return line.strip()


def dsn(recipient, message_id):
    return (
        "From: MAILER-DAEMON@mx.example.net\r\nSubject: Undelivered Mail\r\n"
        "MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=\"B\"\r\n\r\n"
        "--B\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.net\r\n\r\n"
        f"Final-Recipient: rfc822; {recipient}\r\nAction: failed\r\nStatus: 5.1.1\r\n"
        "Diagnostic-Code: smtp; 550 5.1.1 user unknown\r\n\r\n"
        f"--B\r\nContent-Type: text/rfc822-headers\r\n\r\nMessage-ID: <{message_id}>\r\n\r\n--B--\r\n"
    ).encode()


async def smuggling_and_forgery(gateway):
    replies = await session(
        ["EHLO attacker.example", "MAIL FROM:<>", f'RCPT TO:<"b+x, victim@gmail.example"@{DOMAIN}>']
    )
    check("a quoted RCPT smuggling a second address is refused", replies[-1].startswith("550"), replies[-1])
    forged = (
        "From: victim@forged.example\r\nTo: unsubscribe-acme@bounces.example.org\r\n"
        "Subject: unsubscribe\r\n\r\nplease\r\n"
    ).encode()
    replies = await session(
        ["EHLO attacker.example", "MAIL FROM:<victim@forged.example>", f"RCPT TO:<unsubscribe-acme@{DOMAIN}>", "DATA"],
        forged,
    )
    check("a forged unsubscribe is taken (250)", replies[-1].startswith("250"), replies[-1])
    status = gateway.cli("status", "victim@forged.example")
    check(
        "… and recorded as unverified_mail, liftable by staff",
        "unverified_mail" in status.stdout,
        status.stdout.strip().splitlines()[-1] if status.stdout else status.stderr,
    )
    replies = await session(["EHLO a.example"] + ["NOOP"] * 60)
    check("a NOOP flood is cut off (421 after 50)", replies[-1].startswith("421"), f"{len(replies) - 3} NOOPs answered, then: {replies[-1]}")


async def idle_memory(gateway):
    pid = gateway.process.pid
    await asyncio.sleep(0.5)
    before = rss_kib(pid)
    streams = []
    for _ in range(IDLE):
        reader, writer = await asyncio.open_connection("127.0.0.1", PORT)
        await read_reply(reader)
        writer.write(b"EHLO idle.example\r\n")
        streams.append((reader, writer))
    for reader, _ in streams:
        await read_reply(reader)
    await asyncio.sleep(0.5)
    after = rss_kib(pid)
    per = (after - before) / IDLE
    print(f"     idle memory: {before} KiB before, {after} KiB with {IDLE} idle sessions: {per:.1f} KiB each")
    for _, writer in streams:
        writer.close()
    await asyncio.sleep(0.5)
    return per


async def tricklers():
    async def trickle(stop):
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", PORT)
        except OSError:
            return
        try:
            await read_reply(reader)
            for byte in b"EHLO trickle.example\r\n" * 100:
                if stop.is_set():
                    break
                writer.write(bytes([byte]))
                await writer.drain()
                await asyncio.sleep(0.5)
        except (OSError, asyncio.TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()

    stop = asyncio.Event()
    tasks = [asyncio.create_task(trickle(stop)) for _ in range(TRICKLERS)]
    await asyncio.sleep(1.0)
    started = time.monotonic()
    turned_away = 0
    while True:
        replies = await session(["HELO normal.example", "MAIL FROM:<>", f"RCPT TO:<bounces@{DOMAIN}>", "DATA"], dsn("t@example.net", "t1"))
        if replies[0].startswith("220") and replies[-1].startswith("250"):
            break
        turned_away += 1
        await asyncio.sleep(0.2)
        if time.monotonic() - started > 60:
            break
    waited = time.monotonic() - started
    stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    check(
        f"{TRICKLERS} trickling connections keep a normal client out no longer than the command timeout ({COMMAND_TIMEOUT} s)",
        waited <= COMMAND_TIMEOUT + 2,
        f"delivered after {waited:.1f} s, turned away {turned_away} times meanwhile",
    )
    return waited


async def kill_under_load(gateway):
    acknowledged = []

    async def sender(worker):
        n = 0
        while True:
            message_id = f"kill-{worker}-{n}@example.net"
            try:
                replies = await session(
                    ["EHLO load.example", "MAIL FROM:<>", f"RCPT TO:<bounces@{DOMAIN}>", "DATA"],
                    dsn(f"k{worker}-{n}@example.net", message_id),
                )
            except (OSError, asyncio.TimeoutError, ConnectionError, asyncio.IncompleteReadError):
                return
            if replies[-1].startswith("250"):
                acknowledged.append(message_id)
            n += 1

    workers = [asyncio.create_task(sender(w)) for w in range(20)]
    while len(acknowledged) < KILL_MAILS:
        await asyncio.sleep(0.05)
    gateway.process.send_signal(signal.SIGKILL)
    gateway.process.wait()
    await asyncio.gather(*workers, return_exceptions=True)
    gateway.start()
    gateway.stop()
    with sqlite3.connect(gateway.db) as db:
        stored = [bytes(raw) for (raw,) in db.execute("SELECT raw FROM evidence")]
    body = b"\n".join(stored)
    lost = [m for m in acknowledged if f"<{m}>".encode() not in body]
    dupes = len(stored) - len(set(stored))
    check(
        f"SIGKILL under load loses nothing that got a 250",
        not lost and dupes == 0,
        f"{len(acknowledged)} acknowledged, {len(stored)} stored, {len(lost)} lost, {dupes} duplicates",
    )
    verify = gateway.cli("evidence", "verify")
    check("… and the evidence chain verifies after the crash", verify.returncode == 0, verify.stdout.strip().splitlines()[0])
    return len(acknowledged), len(stored), len(lost)


async def main():
    if not os.environ.get("NO_BUILD"):
        subprocess.run(["cargo", "build", "--release", "--locked", "-q"], cwd=ROOT, check=True)
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    work = tempfile.mkdtemp(prefix="bouncegate-adversarial-")
    gateway = Gateway(work)
    gateway.start()
    try:
        await smuggling_and_forgery(gateway)
        per_connection = await idle_memory(gateway)
        waited = await tricklers()
        acknowledged, stored, lost = await kill_under_load(gateway)
    finally:
        if gateway.process.poll() is None:
            gateway.stop()
        shutil.rmtree(work, ignore_errors=True)
    print(
        f"figures: idle {per_connection:.1f} KiB/connection; {TRICKLERS} tricklers kept a client out {waited:.1f} s "
        f"(command timeout {COMMAND_TIMEOUT} s); SIGKILL: {acknowledged} acknowledged, {stored} stored, {lost} lost"
    )
    print(f"{'passed' if not failures else 'FAILED: ' + ', '.join(failures)}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
