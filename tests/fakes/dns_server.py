"""A fake authoritative DNS server speaking the real protocol (UDP and TCP) on 127.0.0.1.

DNS is outside the test machine; this stands in for the hosted domain's name
server. It serves the zone it is given (zone-file text, as `sealgate dns` prints
it), answers NXDOMAIN for names it does not hold and an empty NOERROR for a
type a name lacks, and sets TC on a UDP answer that does not fit, so resolvers
retry over TCP as they do in the wild.

    with FakeDns(zone_text, origin="example.test.") as server:
        resolver = server.resolver()          # a dnspython resolver asking only it
        server.queries                        # [(name, type, udp|tcp), ...] in arrival order
"""

from __future__ import annotations

import socket
import socketserver
import struct
import threading
from typing import Any

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.resolver
import dns.zone


class FakeDns:
    def __init__(self, zone_text: str, origin: str) -> None:
        self.zone = dns.zone.from_text(
            zone_text, origin=origin, relativize=False, check_origin=False
        )
        self.queries: list[tuple[str, str, str]] = []
        owner = self

        class Udp(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                data, sock = self.request
                sock.sendto(owner.answer(data, udp=True), self.client_address)

        class Tcp(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                conn: socket.socket = self.request
                head = conn.recv(2)
                if len(head) < 2:
                    return
                (length,) = struct.unpack(">H", head)
                data = b""
                while len(data) < length:
                    chunk = conn.recv(length - len(data))
                    if not chunk:
                        return
                    data += chunk
                reply = owner.answer(data, udp=False)
                conn.sendall(struct.pack(">H", len(reply)) + reply)

        # One port for both transports: a free UDP port may be taken for TCP; try another.
        for _ in range(50):
            udp = socketserver.ThreadingUDPServer(("127.0.0.1", 0), Udp)
            port = udp.server_address[1]
            try:
                tcp = socketserver.ThreadingTCPServer(("127.0.0.1", port), Tcp)
            except OSError:
                udp.server_close()
                continue
            break
        else:
            raise RuntimeError("no port free for both UDP and TCP")
        self._udp, self._tcp, self.port = udp, tcp, port
        self._threads = [
            threading.Thread(target=server.serve_forever, daemon=True)
            for server in (self._udp, self._tcp)
        ]
        for thread in self._threads:
            thread.start()

    def answer(self, wire: bytes, *, udp: bool) -> bytes:
        query = dns.message.from_wire(wire)
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        question = query.question[0]
        transport = "udp" if udp else "tcp"
        self.queries.append(
            (question.name.to_text(), dns.rdatatype.to_text(question.rdtype), transport)
        )
        node = self.zone.get_node(question.name)
        if node is None:
            response.set_rcode(dns.rcode.NXDOMAIN)
        else:
            rdataset = node.get_rdataset(question.rdclass, question.rdtype)
            if rdataset is not None:
                rrset = response.find_rrset(
                    response.answer,
                    question.name,
                    question.rdclass,
                    question.rdtype,
                    create=True,
                )
                rrset.update(rdataset)
        limit = 512 if query.edns < 0 else max(query.payload, 512)
        try:
            return response.to_wire(max_size=limit if udp else 65535)
        except dns.exception.TooBig:
            response.answer = []
            response.flags |= dns.flags.TC
            return response.to_wire()

    def resolver(self) -> dns.resolver.Resolver:
        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers = ["127.0.0.1"]
        resolver.port = self.port
        resolver.lifetime = 5.0
        return resolver

    def txt_lookup(self, name: bytes, timeout: float = 5, **_: Any) -> bytes | None:
        """A `dnsfunc` for dkimpy: the TXT record at `name`, asked over the wire."""
        try:
            answer = self.resolver().resolve(name.decode("ascii"), "TXT")
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return None
        return b"".join(b"".join(rdata.strings) for rdata in answer)

    def close(self) -> None:
        for server in (self._udp, self._tcp):
            server.shutdown()
            server.server_close()
        for thread in self._threads:
            thread.join(5)

    def __enter__(self) -> FakeDns:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
