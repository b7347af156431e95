#!/usr/bin/env python3
"""Runs a command and prints the seconds from its start until a marker appears on its stdout.

Usage: time_to_marker.py MARKER TIMEOUT [--guest-clock] -- COMMAND...
With --guest-clock it also prints the kernel's timestamp on the marker's line (printk.time=1): the guest's own clock.
Once the marker is seen the command gets SIGTERM (QEMU quits; lkrun presses the guest's power button) and, if it
has not ended a second later, another one (lkrun then stops the VM at once: an early marker can come before the
guest listens to its power button). Its output is drained until it ends. It is killed if the marker has not come,
or it has not ended, TIMEOUT seconds after starting.
"""
import os
import re
import select
import signal
import subprocess
import sys
import time


def main() -> int:
    marker = sys.argv[1].encode()
    timeout = float(sys.argv[2])
    command = sys.argv[sys.argv.index("--") + 1:]
    guest_clock = "--guest-clock" in sys.argv[3:sys.argv.index("--")]
    start = time.monotonic()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    seen = b""
    found = None
    guest_time = None
    second_signal_at = None
    while True:
        now = time.monotonic()
        if now - start > timeout:
            process.kill()
            break
        if second_signal_at is not None and now >= second_signal_at:
            process.send_signal(signal.SIGTERM)
            second_signal_at = None
        readable, _, _ = select.select([process.stdout], [], [], 0.1)
        if not readable:
            continue
        chunk = os.read(process.stdout.fileno(), 65536)
        if not chunk:
            break
        seen = (seen + chunk)[-4096:]
        if found is None and marker in seen:
            found = time.monotonic() - start
            line = seen[:seen.index(marker)].rsplit(b"\n", 1)[-1]
            stamp = re.search(rb"\[\s*(\d+\.\d+)\]", line)
            guest_time = stamp and stamp.group(1).decode()
            process.send_signal(signal.SIGTERM)
            second_signal_at = time.monotonic() + 1
    process.wait()
    if found is None:
        print(f"time_to_marker: '{marker.decode()}' never appeared", file=sys.stderr)
        return 1
    if guest_clock:
        if guest_time is None:
            print("time_to_marker: the marker's line has no kernel timestamp", file=sys.stderr)
            return 1
        print(f"{found:.3f} {float(guest_time):.3f}")
    else:
        print(f"{found:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
