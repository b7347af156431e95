#!/usr/bin/env python3
"""The soak's traffic and its sampler (run by bench/soak.sh, which boots the VM).

Three streams run at once, each checked end to end, until the soak's time is up:
  vsock:  random messages to the guest tool's echo service through STATE/guest.00001388; the reply must match
  http:   GET / of the guest's busybox httpd through a published port; the body must be the test guest's page
  g2h:    the guest fetches a random blob from this script's HTTP server at 192.168.65.1:PORT (the host's
          loopback through the NAT) and reports back its sha256; the digest must match the blob served
Every 10 s a line with lkrun's RSS, descriptor count and CPU share since the last sample, and the operations and
failures of each stream since the last sample, goes to stdout. Usage:
  soak_traffic.py LKRUN_PID STATE_DIR HTTP_PORT HOST_PORT MINUTES EXPECTED_PAGE
"""
import hashlib
import http.server
import os
import socket
import sys
import threading
import time
import urllib.request

lkrun_pid, state, http_port, host_port, minutes, page_file = sys.argv[1:7]
lkrun_pid, http_port, host_port = int(lkrun_pid), int(http_port), int(host_port)
deadline = time.monotonic() + float(minutes) * 60
expected_page = open(page_file, "rb").read()
ticks_per_second = os.sysconf("SC_CLK_TCK")

lock = threading.Lock()
counts = {name: [0, 0] for name in ("vsock", "http", "g2h")}  # operations, failures since the last sample
errors = []  # the first few failures, verbatim, for the report


def record(stream, ok, detail=""):
    with lock:
        counts[stream][0] += 1
        if not ok:
            counts[stream][1] += 1
            if len(errors) < 20:
                errors.append(f"{time.strftime('%H:%M:%S')} {stream}: {detail}")


def vsock_echo():
    path = os.path.join(state, "guest.00001388")
    while time.monotonic() < deadline:
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(30)
                s.connect(path)
                # Several messages per connection, so both connection setup and steady streams are exercised.
                for _ in range(20):
                    message = os.urandom(4096)
                    s.sendall(message)
                    reply = b""
                    while len(reply) < len(message):
                        chunk = s.recv(len(message) - len(reply))
                        if not chunk:
                            raise ConnectionError("echo closed early")
                        reply += chunk
                    record("vsock", reply == message, "reply differs")
                    time.sleep(0.05)
        except Exception as e:  # noqa: BLE001 - every failure is a finding of the soak
            record("vsock", False, repr(e))
            time.sleep(1)


def published_http():
    url = f"http://127.0.0.1:{http_port}/"
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=30) as response:
                body = response.read()
            record("http", body == expected_page, f"body of {len(body)} bytes differs")
        except Exception as e:  # noqa: BLE001
            record("http", False, repr(e))
            time.sleep(1)
        time.sleep(0.2)


served = {}  # digest of the last blob served, checked against what the guest reports


class GuestToHost(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - the name http.server looks for
        if self.path == "/blob":
            blob = os.urandom(65536)
            served["digest"] = hashlib.sha256(blob).hexdigest()
            body = blob
        elif self.path.startswith("/report?sha="):
            reported = self.path.split("=", 1)[1]
            expected = served.pop("digest", None)
            record("g2h", reported == expected, f"guest got {reported}, served {expected}")
            body = b"ok\n"
        else:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def sample():
    with open(f"/proc/{lkrun_pid}/status") as f:
        status = {line.split(":")[0]: line.split()[1] for line in f if line.startswith(("VmRSS:", "RssShmem:"))}
    # RssShmem is the guest's memory, shared with QEMU, in the pages lkrun's vhost-user device has touched.
    rss_kib, guest_kib = int(status["VmRSS"]), int(status["RssShmem"])
    fds = len(os.listdir(f"/proc/{lkrun_pid}/fd"))
    with open(f"/proc/{lkrun_pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    cpu_ticks = int(fields[11]) + int(fields[12])
    return rss_kib, guest_kib, fds, cpu_ticks


server = http.server.ThreadingHTTPServer(("127.0.0.1", host_port), GuestToHost)
threading.Thread(target=server.serve_forever, daemon=True).start()
for target in (vsock_echo, published_http):
    threading.Thread(target=target, daemon=True).start()

start = time.monotonic()
_, _, _, last_ticks = sample()
last_time = start
print("# elapsed_s rss_kib fds cpu_pct vsock_ops vsock_fail http_ops http_fail g2h_ops g2h_fail guest_kib", flush=True)
while time.monotonic() < deadline:
    time.sleep(10)
    now = time.monotonic()
    rss, guest, fds, ticks = sample()
    cpu = 100.0 * (ticks - last_ticks) / ticks_per_second / (now - last_time)
    last_ticks, last_time = ticks, now
    with lock:
        row = [counts[name][i] for name in ("vsock", "http", "g2h") for i in (0, 1)]
        for name in counts:
            counts[name] = [0, 0]
    print(f"{now - start:.0f} {rss} {fds} {cpu:.1f} " + " ".join(map(str, row)) + f" {guest}", flush=True)
server.shutdown()
for line in errors:
    print(f"# error {line}", flush=True)
