#!/usr/bin/env bash
# The shared network (lkrun network serve, VMs attached with -networking vpnkit,ETH,PORT) against the default
# private NAT network, in the same run, on the same test guest:
#   private - lkrun run -publish: the VM's own NAT network (libslirp inside that lkrun)
#   shared  - lkrun run -networking vpnkit,ETH,PORT -publish: the VM's lkrun relays its frames over VPNKit's
#             ethernet protocol to the service, whose switch hands them to libslirp; the ports are published
#             through the service's port socket
# The machine is shared and its load drifts, so the two run side by side (two VMs) and take turns, transfer by
# transfer, ROUNDS times over, alternating which goes first. Each turn moves 64 MiB host to guest (into dd behind
# busybox nc), 64 MiB guest to host (from dd), and counts HTTP/1.0 connections per second to busybox httpd for 2 s,
# all through published ports (bench/network_client.py). Then the private VM stops, a second VM joins the shared
# network, and the first sends 64 MiB to it over the switch ROUNDS times: the host asks for each transfer through a
# published port and times it from the request to the receiver's record count. The sender pipes dd into busybox nc,
# whose 8 KiB copies cost the emulated guest more than dd behind nc -e does above, so each VM to VM turn is paired
# with the same sender pushing 64 MiB to a sink on the host's loopback (through .1): the same guest work, through
# libslirp instead of the switch. Figures are medians over the rounds; each VM first moves 4 MiB unmeasured, so
# QEMU's code translation is warm for both alike.
#
# Usage: bench/shared-network.sh [ROUNDS]   (default 7; results also go to bench/results/shared-network.txt)
# Needs the test guest (tests/images/build.sh; LKRUN_TEST_IMAGES overrides out/images), qemu-system-x86 and
# python3. BASE_PORT (default 25101) and the next eight ports must be free.
set -euo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
rounds=${1:-7}
results="$repo/bench/results/shared-network.txt"
guest=$images/guest/guest
client="$repo/bench/network_client.py"
size=$((64 << 20))
warmup=$((4 << 20))
base=${BASE_PORT:-25101}

for tool in qemu-system-x86_64 python3; do
    command -v "$tool" >/dev/null || { echo "$tool is not installed" >&2; exit 1; }
done
[ -f "$guest-kernel" ] || { echo "$guest-kernel is missing: build the test images with tests/images/build.sh" >&2; exit 1; }
"$repo/lkrun" --help >/dev/null

work=$(mktemp -d "${TMPDIR:-/tmp}/lkrun-bench-shared.XXXXXX")
declare -A vm_pid
service_pid=
host_sink_pid=
cleanup() {
    [ -z "$host_sink_pid" ] || kill "$host_sink_pid" 2>/dev/null || true
    for pid in "${vm_pid[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${vm_pid[@]}"; do wait "$pid" 2>/dev/null || true; done
    [ -z "$service_pid" ] || { kill "$service_pid" 2>/dev/null || true; wait "$service_pid" 2>/dev/null || true; }
    [ -n "${KEEP_WORK:-}" ] && echo "work dir kept: $work" >&2 || rm -rf "$work"
}
trap cleanup EXIT

# The guest's servers, started by the test guest's init from the metadata CD once it is ready: a sink, a source,
# and (for VM to VM) a sender that reads the receiver's address and pushes the bytes to its sink.
cat >"$work/user-data" <<'GUEST'
#!/bin/sh
blocks=$(sed -n 's/.*lkrun.bench_blocks=\([0-9]*\).*/\1/p' /proc/cmdline)
printf '#!/bin/sh\nexec dd of=/dev/null bs=65536 iflag=fullblock 2>&1\n' >/tmp/sink
printf '#!/bin/sh\nhead -c 1 >/dev/null\nexec dd if=/dev/zero bs=65536 count=%s 2>/dev/null\n' "$blocks" >/tmp/source
printf '#!/bin/sh\nread address port blocks\ndd if=/dev/zero bs=65536 count=$blocks 2>/dev/null | nc $address $port\n' >/tmp/sender
chmod +x /tmp/sink /tmp/source /tmp/sender
nc -ll -p 5001 -e /tmp/sink </dev/null >/dev/null 2>&1 &
nc -ll -p 5002 -e /tmp/source </dev/null >/dev/null 2>&1 &
nc -ll -p 5003 -e /tmp/sender </dev/null >/dev/null 2>&1 &
GUEST
image="$work/guest"
ln -s "$guest-kernel" "$image-kernel"
ln -s "$guest-initrd.img" "$image-initrd.img"
echo "$(cat "$guest-cmdline") lkrun.bench_blocks=$((size / 65536))" >"$image-cmdline"

export XDG_STATE_HOME="$work/xdg-state"
"$lkrun_binary" network serve --eth "$work/eth.sock" --port "$work/port.sock" 2>"$work/service.log" &
service_pid=$!
for _ in $(seq 100); do [ -S "$work/port.sock" ] && break; sleep 0.05; done
[ -S "$work/port.sock" ] || { echo "the network service did not start: $(cat "$work/service.log")" >&2; exit 1; }

# Host ports of a VM: sink, source, http, sender from its first port on.
boot() {
    local name=$1 ports=$2; shift 2
    "$lkrun_binary" run -mem 256 -console-file -state "$work/state-$name" -data-file "$work/user-data" \
        -publish "$ports:5001" -publish "$((ports + 1)):5002" -publish "$((ports + 2)):80" -publish "$((ports + 3)):5003" \
        "$@" "$image" >"$work/$name.log" 2>&1 &
    vm_pid[$name]=$!
}

wait_ready() {
    local name=$1
    for _ in $(seq 1200); do
        grep -q "lkrun-guest: user-data exit 0" "$work/state-$name/console.log" 2>/dev/null && return 0
        kill -0 "${vm_pid[$name]}" 2>/dev/null || break
        sleep 0.1
    done
    echo "$name: the guest did not get ready; see $work (kept)" >&2
    KEEP_WORK=1
    exit 1
}

stop() {
    kill -TERM "${vm_pid[$1]}" 2>/dev/null || true
    wait "${vm_pid[$1]}" 2>/dev/null || true
    unset 'vm_pid[$1]'
}

measure() {
    timeout 120 python3 "$client" "$@" 2>>"$work/client.log" || echo failed
}

# One transfer from a guest: asks the sender behind PORT to push BYTES to ADDRESS:SINK; prints MiB/s.
# The answer comes only once the whole transfer is done, so the wait for it is long.
push() {
    timeout 300 python3 - "$@" 2>>"$work/client.log" <<'PY' || echo failed
import re, socket, sys, time
port, total, address, sink = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
start = time.perf_counter()
with socket.create_connection(("127.0.0.1", port), timeout=280) as s:
    s.sendall(f"{address} {sink} {total // 65536}\n".encode())
    reply = b""
    while chunk := s.recv(4096):
        reply += chunk
elapsed = time.perf_counter() - start
records = re.search(rb"(\d+)\+0 records in", reply)
if not records or int(records.group(1)) * 65536 != total:
    raise SystemExit(f"the receiver read {reply!r}, not {total} bytes")
print(f"{total / elapsed / 2**20:.1f}")
PY
}

boot private "$base"
boot shared $((base + 4)) -networking "vpnkit,$work/eth.sock,$work/port.sock"
wait_ready private
wait_ready shared
measure h2g "$base" "$warmup" >/dev/null
measure h2g $((base + 4)) "$warmup" >/dev/null
: >"$work/samples"
for round in $(seq "$rounds"); do
    if [ $((round % 2)) = 1 ]; then order="private shared"; else order="shared private"; fi
    for name in $order; do
        if [ "$name" = private ]; then ports=$base; else ports=$((base + 4)); fi
        line="$name $(measure h2g "$ports" "$size") $(measure g2h $((ports + 1)) "$size") $(measure cps $((ports + 2)) 2)"
        echo "$line" | tee -a "$work/samples" >&2
        cut -d' ' -f1 /proc/loadavg >>"$work/loads"
    done
done
stop private

# The host's sink: reads to the end, then answers with the 64 KiB records it got, as dd does in the guest.
host_sink=$((base + 8))
python3 - "$host_sink" 2>>"$work/client.log" <<'PY' &
import socket, sys
server = socket.create_server(("127.0.0.1", int(sys.argv[1])))
while True:
    connection, _ = server.accept()
    with connection:
        received = 0
        while chunk := connection.recv(1 << 20):
            received += len(chunk)
        connection.sendall(f"{received // 65536}+0 records in\n".encode())
PY
host_sink_pid=$!
boot receiver "$base" -networking "vpnkit,$work/eth.sock,$work/port.sock"
wait_ready receiver
receiver=$(cat "$work/state-receiver/ip")
push $((base + 7)) "$warmup" "$receiver" 5001 >/dev/null
push $((base + 7)) "$warmup" 192.168.65.1 "$host_sink" >/dev/null
for round in $(seq "$rounds"); do
    if [ $((round % 2)) = 1 ]; then order="vm host"; else order="host vm"; fi
    for to in $order; do
        if [ "$to" = vm ]; then
            echo "vm-to-vm $(push $((base + 7)) "$size" "$receiver" 5001)"
        else
            echo "vm-to-host $(push $((base + 7)) "$size" 192.168.65.1 "$host_sink")"
        fi | tee -a "$work/samples" >&2
        cut -d' ' -f1 /proc/loadavg >>"$work/loads"
    done
done
kill "$host_sink_pid"
host_sink_pid=
stop receiver
stop shared

{
    echo "# shared network (lkrun network serve, -networking vpnkit,ETH,PORT) against the private NAT network, test guest under TCG on $(nproc) shared CPUs; the two side by side, turns alternating, median of $rounds turns"
    echo "# $(date -u +%Y-%m-%dT%H:%MZ), $(qemu-system-x86_64 --version | head -1), lkrun $(git -C "$repo" rev-parse --short HEAD)"
    echo "# machine load while measuring (1-minute load average at each turn): $(sort -g "$work/loads" | awk '{ v[NR] = $1 } END { printf "median %s, range %s-%s", v[int((NR + 1) / 2)], v[1], v[NR] }')"
    echo "# host->guest and guest->host: 64 MiB over one TCP connection through a published port (MiB/s); conn/s: HTTP/1.0 GET per new connection to busybox httpd for 2 s"
    echo "# vm->vm: 64 MiB from one VM to another on the shared network; vm->host: the same sender to a sink on the host's loopback through .1 (MiB/s, timed by the host from the request to the receiver's count)"
    python3 - "$work/samples" <<'REPORT'
import statistics, sys
samples = {}
for line in open(sys.argv[1]):
    setup, *values = line.split()
    samples.setdefault(setup, []).append(values)
def numbers(setup, i):
    return sorted(float(v[i]) for v in samples.get(setup, []) if v[i] != "failed")
def median(setup, i):
    values = numbers(setup, i)
    return statistics.median(values) if values else None
def failed(setup):
    return sum(1 for v in samples.get(setup, []) if "failed" in v)
metrics = ["host->guest", "guest->host", "conn/s"]
print(f"{'setup':10}" + "".join(f"{m:>13}" for m in metrics) + "  failed  (ranges)")
for setup in ["private", "shared"]:
    values = "".join(f"{median(setup, i):13.1f}" if median(setup, i) is not None else f"{'-':>13}" for i in range(3))
    ranges = " ".join(f"{numbers(setup, i)[0]:.0f}-{numbers(setup, i)[-1]:.0f}" if numbers(setup, i) else "-" for i in range(3))
    print(f"{setup:10}{values}  {failed(setup):6}  ({ranges})")
ratios = []
for i, m in enumerate(metrics):
    a, b = median("shared", i), median("private", i)
    ratios.append(f"{m} {a / b:.2f}" if a and b else f"{m} -")
print("ratio shared/private: " + ", ".join(ratios) + "  (target: at least 0.90)")
for setup, what in [("vm-to-vm", "vm->vm over the switch"), ("vm-to-host", "vm->host through .1 (same sender)")]:
    v = numbers(setup, 0)
    print(f"{what}: {statistics.median(v):.1f} MiB/s (range {v[0]:.1f}-{v[-1]:.1f}, {failed(setup)} failed)" if v else f"{what}: every transfer failed")
REPORT
} | tee "$results"
