#!/usr/bin/env python3
"""Runs a command and prints the seconds from its start until a marker appears on its stdout.

Usage: time_to_marker.py MARKER TIMEOUT -- COMMAND...
The command is left to end by itself (the benchmark guests power off after their marker); it is killed if it
has not ended TIMEOUT seconds after starting.
"""
import os
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
        chunk = os.read(process.stdout.fileno(), 65536)
        if not chunk:
            break
        seen = (seen + chunk)[-4096:]
        if found is None and marker in seen:
            found = time.monotonic() - start
        if time.monotonic() - start > timeout:
            process.kill()
            break
    process.wait()
    if found is None:
        print(f"time_to_marker: '{marker.decode()}' never appeared", file=sys.stderr)
        return 1
    print(f"{found:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
