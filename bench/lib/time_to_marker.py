#!/usr/bin/env python3
"""Runs a command and prints the seconds from its start until a marker appears on its stdout.

Usage: time_to_marker.py MARKER TIMEOUT -- COMMAND...
Once the marker is seen the command gets SIGTERM and is waited for (lkrun then shuts its guest down; QEMU quits).
It is killed if the marker has not come, or it has not ended, TIMEOUT seconds after starting.
"""
import os
import select
import signal
import subprocess
import sys
import time


def main() -> int:
    marker = sys.argv[1].encode()
    timeout = float(sys.argv[2])
    command = sys.argv[sys.argv.index("--") + 1:]
    start = time.monotonic()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    seen = b""
    found = None
    while True:
        remaining = timeout - (time.monotonic() - start)
        if remaining <= 0:
            process.kill()
            break
        readable, _, _ = select.select([process.stdout], [], [], remaining)
        if not readable:
            continue
        chunk = os.read(process.stdout.fileno(), 65536)
        if not chunk:
            break
        seen = (seen + chunk)[-4096:]
        if found is None and marker in seen:
            found = time.monotonic() - start
            process.send_signal(signal.SIGTERM)
    process.wait()
    if found is None:
        print(f"time_to_marker: '{marker.decode()}' never appeared", file=sys.stderr)
        return 1
    print(f"{found:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
