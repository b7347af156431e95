#!/usr/bin/env python3
"""Host side of bench/network.sh: one measurement through a published port, printed as one number.

  h2g PORT BYTES     send BYTES to a guest that reads them in 64 KiB blocks (dd) and answers with its record
                     count; prints MiB/s
  g2h PORT BYTES     read BYTES from a guest that sends them; prints MiB/s. The host sends one byte first
                     (the guest reads and drops it): passt 2023-03 delivers nothing from the guest on a forwarded
                     connection until the host side has sent something.
  cps PORT SECONDS   HTTP/1.0 GET / on a new connection each time, for SECONDS; prints connections per second
"""
import re
import socket
import sys
import time

CHUNK = 256 * 1024
BLOCK = 64 * 1024


def connect(port):
    return socket.create_connection(("127.0.0.1", port), timeout=60)


def host_to_guest(port, total):
    block = bytes(CHUNK)
    start = time.perf_counter()
    with connect(port) as s:
        sent = 0
        while sent < total:
            sent += s.send(block[: min(CHUNK, total - sent)])
        s.shutdown(socket.SHUT_WR)
        reply = b""
        while chunk := s.recv(4096):
            reply += chunk
    elapsed = time.perf_counter() - start
    records = re.search(rb"(\d+)\+(\d+) records in", reply)
    if not records or int(records.group(1)) * BLOCK != total or int(records.group(2)) != 0:
        raise SystemExit(f"the guest read {reply!r}, not {total} bytes")
    return total / elapsed / 2**20


def guest_to_host(port, total):
    start = time.perf_counter()
    received = 0
    with connect(port) as s:
        s.sendall(b"\n")
        buffer = bytearray(CHUNK)
        while read := s.recv_into(buffer):
            received += read
    elapsed = time.perf_counter() - start
    if received != total:
        raise SystemExit(f"received {received} bytes, not {total}")
    return total / elapsed / 2**20


def connections_per_second(port, seconds):
    count = 0
    start = time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        with connect(port) as s:
            s.sendall(b"GET / HTTP/1.0\r\n\r\n")
            reply = b""
            while chunk := s.recv(4096):
                reply += chunk
        if b"lkrun-guest http ok" not in reply:
            raise SystemExit(f"unexpected reply {reply[:80]!r}")
        count += 1
    return count / elapsed


def main():
    mode, port, amount = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    measure = {"h2g": host_to_guest, "g2h": guest_to_host, "cps": connections_per_second}[mode]
    print(f"{measure(port, amount):.1f}")


if __name__ == "__main__":
    main()
