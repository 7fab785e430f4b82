#!/usr/bin/env python3
"""Labels what the MTAs of generate.sh returned, by what each probe's refusal means.

  label.py SCENARIOS CAPTURED_DIR CORPUS_DIR

CAPTURED_DIR holds one file per returned mail, named after the address it was returned to:
`MTA=SCENARIO[.N].eml`. For each, the recipients it reports are the probe's recipients named in
the mail's own text (above the returned original); each gets the label of the refusal its
address met (scenarios.toml) or of the MTA's own situation (below). A mail that says delivery is
only delayed is labelled as a delay (never hard). Writes CORPUS_DIR/emails/ and labels.jsonl in
the format of ../shared/corpus, with each recipient's address added.
"""

import json
import os
import re
import shutil
import sys
import tomllib

# The MTA's own situations (generate.sh `scenarios`): no remote reply, so no status is labelled.
SPECIAL = {
    "nxdomain": ("hostunknown", True, "no such domain: the local DNS answers NXDOMAIN"),
    "null-mx": ("notaccept", True, "the domain publishes a null MX (RFC 7505)"),
    # What failed each time is the network; when the bounce itself says the queue's time ran
    # out, that is what it reports (see `expiry_said`).
    "unreachable": ("networkerror", False, "nothing listens at the domain's MX until the queue lifetime ends"),
    "local-unknown": ("userunknown", True, "no such local user"),
    "local-full": ("mailboxfull", False, "the local mailbox is over its size limit"),
    "vacation": ("vacation", False, "Dovecot Pigeonhole's vacation answers for a user away"),
}


def status_of(reply):
    m = re.match(r"^\d{3}[ -]#?([245]\.\d{1,3}\.\d{1,3})\b", reply[-1])
    return m.group(1) if m else None


def load(path):
    providers = tomllib.load(open(path, "rb"))["provider"]
    by_address = {}
    for p in providers:
        if p.get("connect"):
            by_address[f"someone@{p['domain']}"] = dict(
                family=p["family"], reason=p["connect_reason"], hard=False,
                reply=p["connect"], source=p["source"])
        for r in p.get("refusal", []):
            by_address[f"{r['user']}@{p['domain']}"] = dict(
                family=p["family"], reason=r["reason"], hard=r["hard"], reply=r["reply"],
                source=p["source"])
    return by_address


def own_text(raw):
    """The mail up to the returned original (whose headers name every recipient)."""
    i = raw.find("From: Newsletter <news@sender.test>")
    if i < 0:
        return raw
    start = raw.rfind("\n\n", 0, i)
    return raw[: start if start >= 0 else i]


def expiry_said(text):
    """The MTA's own text says the queue gave up for time (RFC 3463 X.4.7, or in words)."""
    return bool(re.search(r"^Status:\s*[45]\.4\.7|retry timeout exceeded|could not be delivered for|delivery time expired|envelope expired",
                          text, re.I | re.M))


def is_delay(text):
    if re.search(r"^Action:\s*delayed", text, re.I | re.M):
        return True
    subject = re.search(r"^Subject:(.*)$", text, re.I | re.M)
    return bool(subject and re.search(r"delay|warning|still being retried", subject.group(1), re.I))


def main():
    scenarios, captured, corpus = sys.argv[1:4]
    by_address = load(scenarios)
    if os.path.isdir(os.path.join(corpus, "emails")):
        shutil.rmtree(os.path.join(corpus, "emails"))
    os.makedirs(os.path.join(corpus, "emails"))
    labels = []
    delays_seen = set()
    names = sorted(os.listdir(captured), key=lambda n: (re.sub(r"(\.\d+)?\.eml$", "", n), n.count("."), n))
    for name in names:
        if not name.endswith(".eml"):
            continue
        mta, scenario = name[: -len(".eml")].split("=", 1)
        raw = open(os.path.join(captured, name), encoding="utf-8", errors="replace").read()
        text = own_text(raw)
        delay = is_delay(text)
        base = re.sub(r"\.\d+$", "", scenario)
        # An MTA warns again and again while it retries; the first warning is enough. So is
        # the first auto-reply; a delay of the mail to the one on holiday is no probe of ours.
        if delay and base == "vacation":
            continue
        if delay or base == "vacation":
            if (mta, base) in delays_seen:
                continue
            delays_seen.add((mta, base))
        found = []
        if base in SPECIAL:
            reason, hard, why = SPECIAL[base]
            if base == "unreachable" and not delay and expiry_said(text):
                reason = "expired"
            where = text if base == "vacation" else text.split("\n\n", 1)[1]
            m = re.search(r"[\w.+=-]+@(mta-\w+\.sender\.test|[\w-]+\.test)", where)
            found.append((0, m.group(0) if m else "", dict(
                family="mta-own", reason=reason, hard=hard, reply=None, source=why)))
        else:
            for address, meaning in by_address.items():
                pos = text.lower().find(address.lower())
                if pos >= 0:
                    found.append((pos, address, meaning))
        found.sort(key=lambda f: f[0])
        if not found:
            print(f"{name}: no probe recipient named; left out", file=sys.stderr)
            continue
        kind = "delay" if delay else "autoreply" if base == "vacation" else "bounce"
        ident = f"{mta}-{base}".replace("=", "-") + ("-delay" if delay else "")
        ident = re.sub(r"[^A-Za-z0-9._-]", "_", ident)
        expect = []
        for _, address, m in found:
            reply = m["reply"]
            expect.append({
                "address": address,
                "status": status_of(reply) if reply else None,
                "reply_code": reply[-1][:3] if reply else "",
                "reason": m["reason"],
                "hard": m["hard"] and not delay,
                "action": "delayed" if delay else "failed",
            })
        if any(l["id"] == ident for l in labels):
            ident += "-2"
        shutil.copyfile(os.path.join(captured, name), os.path.join(corpus, "emails", ident + ".eml"))
        labels.append({
            "id": ident,
            "lhost": mta,
            "family": found[0][2]["family"],
            "file": f"emails/{ident}.eml",
            "kind": kind,
            "expect": expect,
            "label_source": "tools/realmta/scenarios.toml: " + found[0][2]["source"],
        })
    with open(os.path.join(corpus, "labels.jsonl"), "w") as f:
        for label in labels:
            f.write(json.dumps(label) + "\n")
    recipients = sum(len(l["expect"]) for l in labels)
    print(f"{len(labels)} mails, {recipients} labelled recipients", file=sys.stderr)


if __name__ == "__main__":
    main()
