#!/usr/bin/env python3
"""Fills a migrated bouncegate SQLite database for benches/purge.sh.

Due for the purge (older than the default retention): EVENTS events (3+ years old), SENDS send
records (400+ days) and EVIDENCE raw bounce mails of about 1 KB (90+ days), sealed into the
evidence chain as the gateway seals them. Kept: SUPPRESSIONS standing suppressions and RECENT
recent events. Indexes are dropped while a table fills and built again after.

    python3 benches/purge_fill.py DB [EVENTS SENDS EVIDENCE SUPPRESSIONS RECENT]
"""
import hashlib
import sqlite3
import sys
import time

db = sys.argv[1]
events, sends, evidence, suppressions, recent = (
    int(x) for x in (sys.argv[2:7] if len(sys.argv) >= 7 else (8_000_000, 1_000_000, 1_000_000, 1_000_000, 200_000))
)
con = sqlite3.connect(db, isolation_level=None)
con.execute("PRAGMA journal_mode = WAL")
con.execute("PRAGMA synchronous = OFF")
con.execute("PRAGMA cache_size = -1048576")
con.execute("PRAGMA temp_store = MEMORY")


def fill(table, sql, **params):
    started = time.time()
    indexes = con.execute(
        "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = ? AND sql IS NOT NULL",
        (table,),
    ).fetchall()
    for name, _ in indexes:
        con.execute(f"DROP INDEX {name}")
    con.execute("BEGIN")
    if callable(sql):
        sql()
    else:
        con.execute(sql, params)
    con.execute("COMMIT")
    for _, create in indexes:
        con.execute(create)
    count = con.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
    print(f"{table}: {count} rows ({time.time() - started:.0f} s)", file=sys.stderr)


SERIES = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < :count) "
EVENT = (
    "INSERT INTO events (occurred_at, kind, address, address_hash, company, brand, reason, class, "
    "status, reply_code, diagnostic, message_id, verified, source) "
    "SELECT strftime('%Y-%m-%dT%H:%M:%S', :start, '+' || (i / 4) || ' seconds') || '.000000Z', "
    "'bounce', :prefix || i || '@example.net', lower(hex(randomblob(32))), 'acme', 'news', "
    "'userunknown', 'hard', '5.1.1', '550', "
    "'smtp; 550 5.1.1 <' || :prefix || i || '@example.net>: Recipient address rejected: User unknown', "
    "'<m' || i || '@acme.example>', 1, 'dsn' FROM n"
)


def both_events():
    con.execute(SERIES + EVENT, {"count": events, "start": "2021-06-01", "prefix": "old"})
    con.execute(SERIES + EVENT, {"count": recent, "start": "2026-11-01", "prefix": "new"})


fill("events", both_events)
fill(
    "sends",
    SERIES + "INSERT INTO sends (address, address_hash, company, brand, class, message_id, sent_at) "
    "SELECT 'sent' || i || '@example.net', lower(hex(randomblob(32))), 'acme', 'news', 'promotional', "
    "'<s' || i || '@acme.example>', strftime('%Y-%m-%dT%H:%M:%S', '2024-06-01', '+' || (i / 4) || ' seconds') || '.000000Z' FROM n",
    count=sends,
)
fill(
    "suppressions",
    SERIES + "INSERT INTO suppressions (address, address_hash, channel, company, brand, reason, source, created_at) "
    "SELECT 'kept' || i || '@example.net', lower(hex(randomblob(32))), 'email', '', '', 'hard_bounce', 'dsn', "
    "'2025-01-01T00:00:00.000000Z' FROM n",
    count=suppressions,
)


def sealed_evidence():
    first = (con.execute("SELECT COALESCE(MAX(evidence_id), 0) FROM evidence_chain").fetchone()[0]) + 1
    previous = con.execute("SELECT link FROM evidence_chain ORDER BY evidence_id DESC LIMIT 1").fetchone()
    previous = previous[0] if previous else ""
    envelope = ["", "bounces@bounces.example.org", "mx.example.net", "192.0.2.1"]
    envelope_sha = hashlib.sha256("".join(f + "\n" for f in envelope).encode()).hexdigest()
    body = ("This is the mail system at host mx.example.net. " * 18).encode()
    rows, links = [], []
    for n in range(evidence):
        id_ = first + n
        received = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(1767225600 + n // 10)) + ".000000Z"
        raw = b"From: MAILER-DAEMON@mx.example.net\r\nSubject: Undelivered Mail " + str(id_).encode() + b"\r\n\r\n" + body
        sha = hashlib.sha256(raw).hexdigest()
        link = hashlib.sha256(f"{previous}\n{id_}\n{received}\n{sha}\n{envelope_sha}\n".encode()).hexdigest()
        rows.append((id_, received, sha, len(raw), raw, *envelope))
        links.append((id_, received, sha, envelope_sha, link))
        previous = link
        if len(rows) == 50_000 or n == evidence - 1:
            con.executemany(
                "INSERT INTO evidence (id, received_at, sha256, size, raw, mail_from, rcpt_to, helo, peer_ip) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
            con.executemany(
                "INSERT INTO evidence_chain (evidence_id, received_at, sha256, envelope_sha256, link) VALUES (?, ?, ?, ?, ?)",
                links,
            )
            rows, links = [], []


fill("evidence", sealed_evidence)
con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
con.close()
