#!/usr/bin/env python3
"""The far side of tools/realmta: a DNS server, the refusing MXs of scenarios.toml, and the
capture MX that keeps every bounce the sending MTAs return.

  receiver.py SCENARIOS OUT_DIR

- DNS on 127.0.0.53:53 (UDP and TCP): each provider's domain has an MX record naming its MX host,
  which resolves to the provider's own loopback address (127.0.1.N, in file order from 10).
  `capture.test` is the capture MX (127.0.0.3); `null-mx.test` has a null MX (RFC 7505);
  `unreachable.test` points at an address where nothing listens; every other name is NXDOMAIN.
- Each provider's MX answers on port 25 as the provider does: the greeting, then the refusal
  keyed by the recipient's local part at the stage it names. Recipients with no refusal are
  accepted (and the message discarded).
- The capture MX accepts everything and writes each message to OUT_DIR/<rcpt local part>.eml,
  with LF line endings, byte for byte otherwise.
"""

import asyncio
import os
import socket
import sys
import tomllib

from dnslib import AAAA, MX, QTYPE, RCODE, RR, A, DNSRecord

CAPTURE_IP = "127.0.0.3"
DNS_IP = "127.0.0.53"
UNREACHABLE_IP = "127.0.1.250"


def load(path):
    with open(path, "rb") as f:
        providers = tomllib.load(f)["provider"]
    for i, p in enumerate(providers):
        p["ip"] = f"127.0.1.{10 + i}"
    return providers


def zone(providers):
    """name -> list of (qtype, rdata)"""
    z = {}

    def add(name, qtype, rdata):
        z.setdefault(name.lower().rstrip(".") + ".", []).append((qtype, rdata))

    for p in providers:
        add(p["domain"], QTYPE.MX, MX(p["mx"] + ".", 10))
        add(p["mx"], QTYPE.A, A(p["ip"]))
    add("capture.test", QTYPE.MX, MX("mx.capture.test.", 10))
    add("mx.capture.test", QTYPE.A, A(CAPTURE_IP))
    add("null-mx.test", QTYPE.MX, MX(".", 0))
    add("unreachable.test", QTYPE.MX, MX("mail.unreachable.test.", 10))
    add("mail.unreachable.test", QTYPE.A, A(UNREACHABLE_IP))
    add("sender.test", QTYPE.A, A("127.0.0.1"))
    return z


def answer(z, data):
    request = DNSRecord.parse(data)
    reply = request.reply()
    name = str(request.q.qname).lower()
    records = z.get(name)
    if records is None:
        reply.header.rcode = RCODE.NXDOMAIN
        return reply.pack()
    for qtype, rdata in records:
        if qtype == request.q.qtype or request.q.qtype == QTYPE.ANY:
            reply.add_answer(RR(request.q.qname, qtype, rdata=rdata, ttl=300))
            if qtype == QTYPE.MX and str(rdata.label) != ".":
                for t2, r2 in z.get(str(rdata.label).lower(), []):
                    if t2 == QTYPE.A:
                        reply.add_ar(RR(rdata.label, QTYPE.A, rdata=r2, ttl=300))
    return reply.pack()


class DnsUdp(asyncio.DatagramProtocol):
    def __init__(self, z):
        self.z = z

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        try:
            self.transport.sendto(answer(self.z, data), addr)
        except Exception as e:  # a malformed query: no answer
            print("dns:", e, file=sys.stderr)


async def dns_tcp(z, reader, writer):
    try:
        while True:
            n = int.from_bytes(await reader.readexactly(2), "big")
            out = answer(z, await reader.readexactly(n))
            writer.write(len(out).to_bytes(2, "big") + out)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    writer.close()


def fill(lines, rcpt, ip):
    return "\r\n".join(l.replace("{rcpt}", rcpt).replace("{ip}", ip) for l in lines) + "\r\n"


async def smtp_session(provider, out_dir, reader, writer):
    peer = writer.get_extra_info("peername")[0]
    hostname = provider["mx"] if provider else "mx.capture.test"

    async def send(text):
        writer.write(text.encode())
        await writer.drain()

    if provider and provider.get("connect"):
        await send(fill(provider["connect"], "", peer))
        writer.close()
        return
    greeting = (provider or {}).get("greeting") or f"{hostname} ESMTP"
    await send(f"220 {greeting}\r\n")
    refusals = {r["user"]: r for r in (provider or {}).get("refusal", [])}
    rcpts, data_refusals = [], []
    try:
        while True:
            line = await reader.readline()
            if not line:
                break
            cmd = line.decode("utf-8", "replace").rstrip("\r\n")
            verb = cmd[:4].upper()
            if verb in ("EHLO", "HELO"):
                ext = [f"250-{hostname}", "250-PIPELINING", "250-8BITMIME", "250-ENHANCEDSTATUSCODES"]
                if provider and provider.get("size_limit"):
                    ext.append(f"250-SIZE {provider['size_limit']}")
                ext.append("250 SMTPUTF8")
                await send("\r\n".join(ext if verb == "EHLO" else [f"250 {hostname}"]) + "\r\n")
            elif verb == "MAIL":
                rcpts, data_refusals = [], []
                await send("250 2.1.0 Ok\r\n")
            elif verb == "RCPT":
                addr = cmd[cmd.find("<") + 1 : cmd.rfind(">")]
                refusal = refusals.get(addr.split("@")[0].lower())
                if refusal and refusal["stage"] == "rcpt":
                    await send(fill(refusal["reply"], addr, peer))
                    if refusal["reply"][-1][:3] == "421":
                        break
                    continue
                if refusal and refusal["stage"] == "data":
                    data_refusals.append((addr, refusal))
                rcpts.append(addr)
                await send("250 2.1.5 Ok\r\n")
            elif verb == "DATA":
                if not rcpts:
                    await send("554 5.5.1 Error: no valid recipients\r\n")
                    continue
                await send("354 End data with <CR><LF>.<CR><LF>\r\n")
                body = bytearray()
                while True:
                    l = await reader.readline()
                    if not l or l in (b".\r\n", b".\n"):
                        break
                    if l.startswith(b".."):
                        l = l[1:]
                    body += l
                if data_refusals:
                    addr, refusal = data_refusals[0]
                    await send(fill(refusal["reply"], addr, peer))
                    if refusal["reply"][-1][:3] == "421":
                        break
                    continue
                if provider is None:
                    raw = bytes(body).replace(b"\r\n", b"\n")
                    for r in rcpts:
                        name = r.split("@")[0].replace("/", "_")
                        path = os.path.join(out_dir, name + ".eml")
                        n = 1
                        while os.path.exists(path):
                            n += 1
                            path = os.path.join(out_dir, f"{name}.{n}.eml")
                        with open(path + ".tmp", "wb") as f:
                            f.write(raw)
                        os.rename(path + ".tmp", path)
                await send("250 2.0.0 Ok: queued as 4ZxYwV0aBcz1\r\n")
            elif verb == "RSET":
                rcpts, data_refusals = [], []
                await send("250 2.0.0 Ok\r\n")
            elif verb == "NOOP":
                await send("250 2.0.0 Ok\r\n")
            elif verb == "QUIT":
                await send("221 2.0.0 Bye\r\n")
                break
            else:
                await send("502 5.5.2 Error: command not recognized\r\n")
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    writer.close()


async def main():
    providers = load(sys.argv[1])
    out_dir = sys.argv[2]
    os.makedirs(out_dir, exist_ok=True)
    z = zone(providers)
    loop = asyncio.get_running_loop()
    await loop.create_datagram_endpoint(lambda: DnsUdp(z), local_addr=(DNS_IP, 53))
    servers = [await asyncio.start_server(lambda r, w: dns_tcp(z, r, w), DNS_IP, 53)]
    for p in providers:
        servers.append(
            await asyncio.start_server(
                lambda r, w, p=p: smtp_session(p, out_dir, r, w), p["ip"], 25, family=socket.AF_INET
            )
        )
    servers.append(
        await asyncio.start_server(lambda r, w: smtp_session(None, out_dir, r, w), CAPTURE_IP, 25)
    )
    print("receiver ready", flush=True)
    await asyncio.gather(*(s.serve_forever() for s in servers))


if __name__ == "__main__":
    asyncio.run(main())
