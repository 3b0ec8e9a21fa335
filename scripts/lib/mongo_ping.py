#!/usr/bin/env python3
"""Exit 0 when a MongoDB wire-protocol server answers {ping: 1} with ok: 1.

usage: mongo_ping.py HOST PORT [TIMEOUT_SECONDS]

Standard library only (no pymongo): one OP_MSG (opcode 2013) round trip.
"""
import socket
import struct
import sys


def bson_doc(*elements: bytes) -> bytes:
    body = b"".join(elements) + b"\x00"
    return struct.pack("<i", len(body) + 4) + body


def ping(host: str, port: int, timeout: float) -> bool:
    doc = bson_doc(
        b"\x10ping\x00" + struct.pack("<i", 1),  # int32 ping: 1
        b"\x02$db\x00" + struct.pack("<i", 6) + b"admin\x00",  # string $db: "admin"
    )
    body = struct.pack("<I", 0) + b"\x00" + doc  # flagBits, section kind 0, document
    header = struct.pack("<iiii", 16 + len(body), 1, 0, 2013)
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.settimeout(timeout)
        s.sendall(header + body)
        reply = b""
        while len(reply) < 4 or len(reply) < struct.unpack("<i", reply[:4])[0]:
            chunk = s.recv(65536)
            if not chunk:
                return False
            reply += chunk
    # The reply document holds ok as a double (type 0x01) or an int32 (0x10).
    return (b"\x01ok\x00" + struct.pack("<d", 1.0)) in reply or (
        b"\x10ok\x00" + struct.pack("<i", 1)
    ) in reply


def main() -> int:
    if len(sys.argv) < 3:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    timeout = float(sys.argv[3]) if len(sys.argv) > 3 else 2.0
    try:
        return 0 if ping(sys.argv[1], int(sys.argv[2]), timeout) else 1
    except OSError:
        return 1


if __name__ == "__main__":
    sys.exit(main())
