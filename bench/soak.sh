#!/usr/bin/env bash
# A long run of one VM under steady traffic, to see that lkrun neither leaks nor fails over time.
# The test guest (1 vCPU, 256 MiB, TCG) boots with a published port and its vsock echo port; then, for MINUTES:
#   vsock echo       4 KiB random messages to the guest tool's echo service through STATE/guest.00001388
#   published HTTP   GET / of the guest's busybox httpd through -publish, body checked
#   guest to host    the guest fetches a random 64 KiB blob from a host server at 192.168.65.1:PORT (the host's
#                    loopback through the NAT) and reports its sha256 back; the host checks it
# lkrun's RSS, descriptor count and CPU share are sampled every 10 s together with each stream's operations and
# failures (bench/soak_traffic.py). Before the traffic starts, the idle VM's RSS is sampled for 30 s.
# lkrun maps the guest's memory for its vhost-user vsock device, so its RSS includes the guest pages that device has
# touched (RssShmem, shared with QEMU, growing towards the guest's size as the guest moves its buffers around);
# its own memory is the RSS less those pages, and the trend is given for both.
# The summary compares the samples after the first 5 minutes with the sample at 5 minutes, and the mean of minutes
# 5-15 with the mean of the last 10 (the trend; growth must stay under 5%).
#
# Usage: bench/soak.sh MINUTES   (results go to bench/results/soak.txt; the raw samples to bench/results/soak-samples.txt)
# Needs the test guest (tests/images/build.sh; LKRUN_TEST_IMAGES overrides out/images), qemu-system-x86 and
# python3. BASE_PORT (default 26001) and the port after it must be free.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

minutes=${1:?usage: bench/soak.sh MINUTES}
results="$repo/bench/results/soak.txt"
samples="$repo/bench/results/soak-samples.txt"
guest=$images/guest/guest
http_port=${BASE_PORT:-26001}
host_port=$((http_port + 1))
for tool in qemu-system-x86_64 python3; do
    command -v "$tool" >/dev/null || { echo "$tool is not installed" >&2; exit 1; }
done
[ -f "$guest-kernel" ] || { echo "$guest-kernel is missing: build the test images with tests/images/build.sh" >&2; exit 1; }
"$repo/lkrun" --help >/dev/null

work=$(mktemp -d "${TMPDIR:-/tmp}/lkrun-soak.XXXXXX")
lkrun_pid=
cleanup() {
    [ -z "$lkrun_pid" ] || { kill "$lkrun_pid" 2>/dev/null || true; wait "$lkrun_pid" 2>/dev/null || true; }
    [ -n "${KEEP_WORK:-}" ] && echo "work dir kept: $work" >&2 || rm -rf "$work"
}
trap cleanup EXIT

# The guest's side of guest-to-host traffic: fetch, digest, report, forever; a failed fetch reports an empty digest.
# (timeout rather than wget -T: Debian's static busybox crashes on -T.)
cat >"$work/user-data" <<GUEST
#!/bin/sh
while true; do
    rm -f /tmp/blob
    timeout 30 wget -q -O /tmp/blob http://192.168.65.1:$host_port/blob
    digest=\$(sha256sum /tmp/blob 2>/dev/null | cut -d' ' -f1)
    timeout 30 wget -q -O /dev/null "http://192.168.65.1:$host_port/report?sha=\$digest"
    sleep 1
done
GUEST

start=$(date -u +%Y-%m-%dT%H:%MZ)
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
XDG_STATE_HOME="$work/xdg" "$lkrun_binary" run -mem 256 -console-file -state "$work/state" \
    -data-file "$work/user-data" -publish "$http_port:80" -vsock-ports 5000 "$guest" >"$work/lkrun.log" 2>&1 &
lkrun_pid=$!
for _ in $(seq 1200); do
    grep -q "lkrun-guest: ready" "$work/state/console.log" 2>/dev/null && break
    kill -0 "$lkrun_pid" 2>/dev/null || { echo "lkrun exited early: $(cat "$work/lkrun.log")" >&2; exit 1; }
    sleep 0.1
done
grep -q "lkrun-guest: ready" "$work/state/console.log" || { echo "the guest did not get ready" >&2; KEEP_WORK=1; exit 1; }

# Idle: the VM booted, nothing flows (the user-data's loop has nobody to fetch from yet, one failed wget per 31 s).
idle_rss=()
for _ in 1 2 3; do
    sleep 10
    idle_rss+=("$(awk '/^VmRSS:/ { rss = $2 } /^RssShmem:/ { guest = $2 } END { print rss " (own " rss - guest ")" }' "/proc/$lkrun_pid/status")")
done
idle_fds=$(find "/proc/$lkrun_pid/fd" -mindepth 1 | wc -l)

python3 "$bench_root/soak_traffic.py" "$lkrun_pid" "$work/state" "$http_port" "$host_port" "$minutes" \
    "$repo/tests/images/rootfs/www/index.html" | tee "$samples"
still_running=yes
kill -0 "$lkrun_pid" 2>/dev/null || still_running="no: $(cat "$work/lkrun.log")"
kill -TERM "$lkrun_pid"
status=0
wait "$lkrun_pid" || status=$?
lkrun_pid=

{
    echo "# soak: one test guest (1 vCPU, 256 MiB, TCG) for $minutes min under vsock echo, published-port HTTP and guest-to-host HTTP, each checked end to end"
    echo "# $start, lkrun $(git -C "$repo" rev-parse --short HEAD)$(git -C "$repo" diff --quiet HEAD -- src || echo ' with changes'), $(machine_line | sed 's/^machine: //')"
    echo "# load average before: $load_before, after: $(cut -d' ' -f1-3 /proc/loadavg) (the machine is shared: other VMs and builds ran beside the soak)"
    echo "idle VM: lkrun RSS $(printf '%s ' "${idle_rss[@]}")KiB (three samples 10 s apart), $idle_fds descriptors"
    echo "lkrun still running at the end: $still_running; exit status after SIGTERM: $status"
    python3 - "$samples" <<'SUMMARY'
import sys
rows = [line.split() for line in open(sys.argv[1]) if line[0].isdigit()]
rows = [[float(v) for v in row] for row in rows]
# lkrun's own memory: its RSS less the guest's memory that it maps for the vhost-user vsock device (column 10).
for r in rows:
    r.append(r[1] - r[10])
if not rows:
    print("no samples"); sys.exit()
ops = {name: (sum(r[4 + 2 * i] for r in rows), sum(r[5 + 2 * i] for r in rows)) for i, name in enumerate(("vsock", "http", "g2h"))}
print("operations (failures): " + ", ".join(f"{name} {int(o)} ({int(f)})" for name, (o, f) in ops.items()))
stalled = [int(r[0]) for r in rows if 0 in (r[4], r[6], r[8])]
print(f"10 s intervals where a stream made no progress: {len(stalled)}" + (f" (at {stalled[:10]} s)" if stalled else ""))
five = next((r for r in rows if r[0] >= 300), rows[0])
later = [r for r in rows if r[0] >= five[0]]
for name, col in (("RSS KiB", 1), ("guest memory in that RSS, KiB", 10), ("own RSS KiB", 11), ("descriptors", 2)):
    top = max(r[col] for r in later)
    print(f"{name}: first {rows[0][col]:.0f}, at {five[0]:.0f} s {five[col]:.0f}, max after {top:.0f} ({100 * (top - five[col]) / five[col]:+.1f}%), last {rows[-1][col]:.0f}")
# RSS and descriptors move with garbage collections and connections in flight: the trend is the mean of the
# ten minutes after the first five against the mean of the last ten.
early = [r for r in rows if 300 <= r[0] < 900]
late = [r for r in rows if r[0] > rows[-1][0] - 600]
if early and late and rows[-1][0] >= 1500:
    for name, col in (("RSS", 1), ("own RSS", 11), ("descriptors", 2)):
        a, b = sum(r[col] for r in early) / len(early), sum(r[col] for r in late) / len(late)
        print(f"{name} trend: mean of 5-15 min {a:.0f}, mean of the last 10 min {b:.0f} ({100 * (b - a) / a:+.1f}%)")
cpu = sorted(r[3] for r in rows)
print(f"lkrun CPU %: median {cpu[len(cpu) // 2]:.1f}, max {cpu[-1]:.1f}")
SUMMARY
    grep '^# error' "$samples" || true
} | tee "$results"
