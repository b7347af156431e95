#!/usr/bin/env bash
# NAT network throughput through published ports, on the same test guest booted three ways:
#   lkrun  - lkrun run with -publish (QEMU user networking with hostfwd, as lkrun sets it up)
#   qemu   - a hand-written QEMU command line with the same user networking and hostfwd
#   passt  - the same hand-written line with -netdev stream to Debian's passt, forwarding the same ports
# Per boot: 64 MiB host to guest (into dd behind busybox nc), 64 MiB guest to host (from dd), each the median of
# three transfers, and HTTP/1.0 connections per second to busybox httpd for 3 s. The setups take turns, one VM at a
# time, the first setup of each round rotating; each reported figure is the median over ROUNDS boots. Every boot
# first moves 4 MiB unmeasured, so QEMU's code translation is warm for all three alike.
#
# Usage: bench/network.sh [ROUNDS]   (default 5; results also go to bench/results/network.txt)
# Needs the test guest (tests/images/build.sh; LKRUN_TEST_IMAGES overrides out/images), qemu-system-x86,
# passt and python3. BASE_PORT (default 25001) and the next two ports must be free.
set -euo pipefail

rounds=${1:-5}
repo=$(cd "$(dirname "$0")/.." && pwd)
results="$repo/bench/results/network.txt"
guest=${LKRUN_TEST_IMAGES:-$repo/out/images}/guest/guest
client="$repo/bench/network_client.py"
size=$((64 << 20))
warmup=$((4 << 20))
base=${BASE_PORT:-25001}
sink_port=$base source_port=$((base + 1)) http_port=$((base + 2))

for tool in qemu-system-x86_64 passt python3; do
    command -v "$tool" >/dev/null || { echo "$tool is not installed" >&2; exit 1; }
done
[ -f "$guest-kernel" ] || { echo "$guest-kernel is missing: build the test images with tests/images/build.sh" >&2; exit 1; }
"$repo/lkrun" --help >/dev/null
lkrun=${LKRUN:-$repo/out/cli/lkrun}

work=$(mktemp -d "${TMPDIR:-/tmp}/lkrun-bench-net.XXXXXX")
vm_pid= passt_pid=
cleanup() {
    for pid in $vm_pid $passt_pid; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    [ -n "${KEEP_WORK:-}" ] && echo "work dir kept: $work" >&2 || rm -rf "$work"
}
trap cleanup EXIT

# The guest's servers, started by the test guest's init from the metadata CD once it is ready.
cat >"$work/user-data" <<'GUEST'
#!/bin/sh
# dd with 64 KiB blocks, so the guest's side costs few system calls; the sink answers with dd's record count.
printf '#!/bin/sh\nexec dd of=/dev/null bs=65536 iflag=fullblock 2>&1\n' >/tmp/sink
# The source first reads the byte the host sends to start it (closing with it unread would reset the connection).
printf '#!/bin/sh\nhead -c 1 >/dev/null\nexec dd if=/dev/zero bs=65536 count=%s 2>/dev/null\n' "$(sed -n 's/.*lkrun.bench_blocks=\([0-9]*\).*/\1/p' /proc/cmdline)" >/tmp/source
chmod +x /tmp/sink /tmp/source
nc -ll -p 5001 -e /tmp/sink </dev/null >/dev/null 2>&1 &
nc -ll -p 5002 -e /tmp/source </dev/null >/dev/null 2>&1 &
GUEST
"$lkrun" metadata create "$work/data.iso" -data-file "$work/user-data"
cmdline="$(cat "$guest-cmdline") lkrun.bench_blocks=$((size / 65536))"
image="$work/guest"
ln -s "$guest-kernel" "$image-kernel"
ln -s "$guest-initrd.img" "$image-initrd.img"
echo "$cmdline" >"$image-cmdline"

# passt drops to nobody before it binds its socket, so nobody must reach the socket's directory and write in it.
chmod 711 "$work"
mkdir -m 1777 "$work/passt"

hand_written_qemu() {
    local console=$1; shift
    # exec, so that the pid of the background job is QEMU's own.
    exec qemu-system-x86_64 -nodefaults -no-user-config -machine q35 -accel tcg -cpu max -smp 1 -m 256 \
        -display none -no-reboot \
        -kernel "$guest-kernel" -initrd "$guest-initrd.img" -append "$cmdline" \
        -serial "file:$console" \
        -drive "if=none,id=cd,file=$work/data.iso,format=raw,media=cdrom,readonly=on" -device ide-cd,drive=cd,bus=ide.1 \
        "$@" -device virtio-net-pci,netdev=n0
}

boot() {
    local setup=$1
    console="$work/$setup-console.log"
    rm -f "$console"
    case $setup in
    lkrun)
        rm -rf "$work/state"
        XDG_STATE_HOME="$work/xdg" "$lkrun" run -mem 256 -console-file -state "$work/state" -data-file "$work/user-data" \
            -publish "$sink_port:5001" -publish "$source_port:5002" -publish "$http_port:80" "$image" \
            >"$work/lkrun.log" 2>&1 &
        vm_pid=$!
        console="$work/state/console.log"
        ;;
    qemu)
        hand_written_qemu "$console" -netdev "user,id=n0,net=192.168.65.0/24,host=192.168.65.1,dns=192.168.65.254,dhcpstart=192.168.65.3,ipv6=off,hostfwd=tcp:127.0.0.1:$sink_port-192.168.65.3:5001,hostfwd=tcp:127.0.0.1:$source_port-192.168.65.3:5002,hostfwd=tcp:127.0.0.1:$http_port-192.168.65.3:80" \
            >"$work/qemu.log" 2>&1 &
        vm_pid=$!
        ;;
    passt)
        rm -f "$work/passt/passt.sock"
        passt -f -q -1 -s "$work/passt/passt.sock" \
            -t "127.0.0.1/$sink_port:5001" -t "127.0.0.1/$source_port:5002" -t "127.0.0.1/$http_port:80" \
            >"$work/passt.log" 2>&1 &
        passt_pid=$!
        for _ in $(seq 100); do [ -S "$work/passt/passt.sock" ] && break; sleep 0.05; done
        hand_written_qemu "$console" -netdev "stream,id=n0,server=off,addr.type=unix,addr.path=$work/passt/passt.sock" \
            >"$work/qemu.log" 2>&1 &
        vm_pid=$!
        ;;
    esac
    for _ in $(seq 1200); do
        grep -q "lkrun-guest: user-data exit 0" "$console" 2>/dev/null && return 0
        kill -0 "$vm_pid" 2>/dev/null || break
        sleep 0.1
    done
    echo "$setup: the guest did not get ready; see $work (kept)" >&2
    trap - EXIT
    exit 1
}

stop() {
    kill -TERM "$vm_pid" 2>/dev/null || true
    wait "$vm_pid" 2>/dev/null || true
    vm_pid=
    if [ -n "$passt_pid" ]; then
        kill "$passt_pid" 2>/dev/null || true
        wait "$passt_pid" 2>/dev/null || true
        passt_pid=
    fi
}

# One measurement; "failed" when the transfer fails (details in client.log).
measure() {
    timeout 120 python3 "$client" "$@" 2>>"$work/client.log" || echo failed
}

# The median of three transfers in a row, "failed" when any fails: one boot's figure, less noisy than one transfer.
median_of_three() {
    local values=() value
    for _ in 1 2 3; do
        value=$(measure "$@")
        [ "$value" = failed ] && { echo failed; return; }
        values+=("$value")
    done
    printf '%s\n' "${values[@]}" | sort -n | sed -n 2p
}

# Whether passt is still there after a measurement; a dead passt is reported with its exit status and the
# measurement it died in, and the rest of that boot is not measured.
passt_alive() {
    [ -z "$passt_pid" ] && return 0
    kill -0 "$passt_pid" 2>/dev/null && return 0
    local status=0
    wait "$passt_pid" || status=$?
    echo "exit status $status$( [ $status -gt 128 ] && echo " (signal $((status - 128)))") during $1" >>"$work/passt-crashes"
    passt_pid=
    return 1
}

setups=(lkrun qemu passt)
: >"$work/samples"
for round in $(seq "$rounds"); do
    for i in 0 1 2; do
        setup=${setups[$(((round + i) % 3))]}
        boot "$setup"
        results_of_boot=()
        for step in "warm-up $sink_port $warmup" "h2g $sink_port $size" "g2h $source_port $size" "cps $http_port 3"; do
            read -r kind port amount <<<"$step"
            if [ "$kind" = warm-up ]; then
                measure h2g "$port" "$amount" >/dev/null
            elif [ "$kind" = cps ]; then
                results_of_boot+=("$(measure "$kind" "$port" "$amount")")
            else
                results_of_boot+=("$(median_of_three "$kind" "$port" "$amount")")
            fi
            if ! passt_alive "$kind"; then
                # A measurement passt died in does not count, nor do the ones it never got to.
                [ "$kind" = warm-up ] || unset 'results_of_boot[-1]'
                while [ ${#results_of_boot[@]} -lt 3 ]; do results_of_boot+=(crashed); done
                break
            fi
        done
        stop
        echo "$setup ${results_of_boot[*]}" | tee -a "$work/samples" >&2
    done
done

{
    echo "# NAT network through published ports, test guest under TCG, median of $rounds boots per setup, setups alternating"
    echo "# $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) CPUs, $(qemu-system-x86_64 --version | head -1), passt $(dpkg-query -W -f '${Version}' passt 2>/dev/null || echo unknown), lkrun $(git -C "$repo" rev-parse --short HEAD)"
    echo "# host->guest and guest->host: 64 MiB over one TCP connection, median of 3 per boot (MiB/s); conn/s: HTTP/1.0 GET per connection to busybox httpd for 3 s"
    python3 - "$work/samples" "$work/passt-crashes" <<'REPORT'
import statistics, sys, os
samples = {}
for line in open(sys.argv[1]):
    setup, *values = line.split()
    samples.setdefault(setup, []).append(values)
metrics = ["host->guest", "guest->host", "conn/s"]
def median(setup, i):
    numbers = [float(v[i]) for v in samples[setup] if v[i] not in ("crashed", "failed")]
    return statistics.median(numbers) if numbers else None
def show(x):
    return f"{x:12.1f}" if x is not None else f"{'-':>12}"
print(f"{'setup':8}" + "".join(f"{m:>12}" for m in metrics) + "   runs that failed")
for setup in ["lkrun", "qemu", "passt"]:
    bad = sum(1 for v in samples[setup] for x in v if x in ("crashed", "failed"))
    print(f"{setup:8}" + "".join(show(median(setup, i)) for i in range(3)) + f"   {bad}")
for other in ["qemu", "passt"]:
    ratios = []
    for i, m in enumerate(metrics):
        a, b = median("lkrun", i), median(other, i)
        ratios.append(f"{m} {a / b:.2f}" if a and b else f"{m} -")
    print(f"ratio lkrun/{other}: " + ", ".join(ratios) + " (1.00: the same; above 1: lkrun is faster)")
crashes = sys.argv[2]
if os.path.exists(crashes):
    lines = [l.strip() for l in open(crashes)]
    print(f"passt died in {len(lines)} of {len(samples['passt'])} boots: " + "; ".join(lines))
else:
    print(f"passt: no crash in {len(samples['passt'])} boots (each: 7 forwarded 4-64 MiB TCP transfers and a 3 s connection-rate run)")
REPORT
} | tee "$results"
