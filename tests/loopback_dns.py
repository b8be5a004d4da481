"""A DNS server on loopback that answers A queries for the names it is
given, so a test can put several servers (127.0.0.1, .2, .3) behind one
name without touching /etc/hosts. gRPC's resolver asks it when the target
names it as authority: `dns://127.0.0.1:PORT/name.test:50053`."""

from __future__ import annotations

import socket
import struct
import threading

_A, _IN = 1, 1


class LoopbackDns:
    def __init__(self, records: dict[str, list[str]]):
        self.records = {name.lower().rstrip("."): ips for name, ips in records.items()}
        self.queries: list[tuple[str, int]] = []
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._socket.bind(("127.0.0.1", 0))
        self.port = self._socket.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def authority(self, name: str, port: int) -> str:
        """A gRPC target that resolves `name` through this server."""
        return f"dns://127.0.0.1:{self.port}/{name}:{port}"

    def _serve(self) -> None:
        while True:
            try:
                query, client = self._socket.recvfrom(4096)
            except OSError:
                return  # closed
            answer = self._answer(query)
            if answer:
                self._socket.sendto(answer, client)

    def _answer(self, query: bytes) -> bytes | None:
        if len(query) < 12:
            return None
        (query_id,) = struct.unpack("!H", query[:2])
        labels, offset = [], 12
        while offset < len(query) and query[offset]:
            length = query[offset]
            labels.append(query[offset + 1: offset + 1 + length].decode("ascii", "replace"))
            offset += 1 + length
        offset += 1
        if offset + 4 > len(query):
            return None
        qtype, qclass = struct.unpack("!HH", query[offset: offset + 4])
        question = query[12: offset + 4]
        name = ".".join(labels).lower()
        self.queries.append((name, qtype))
        ips = self.records.get(name, []) if (qtype, qclass) == (_A, _IN) else []
        # NXDOMAIN for names it does not know; an empty answer for other types.
        rcode = 0 if name in self.records else 3
        header = struct.pack("!HHHHHH", query_id, 0x8180 | rcode, 1, len(ips), 0, 0)
        answers = b"".join(
            struct.pack("!HHHIH", 0xC00C, _A, _IN, 1, 4) + socket.inet_aton(ip) for ip in ips
        )
        return header + question + answers

    def close(self) -> None:
        self._socket.close()
