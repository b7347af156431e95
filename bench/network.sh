#!/usr/bin/env bash
# NAT network throughput through published ports, on the same test guest booted four ways:
#   lkrun-stream   - lkrun run with -publish: lkrun's own NAT network (libslirp in lkrun, MTU 65520), QEMU's device
#                    linked to it by -netdev stream (LKRUN_QEMU_NET_LINK=stream)
#   lkrun-datagram - the same over -netdev dgram, one frame per unix datagram (LKRUN_QEMU_NET_LINK=datagram)
#   qemu           - a hand-written QEMU command line with QEMU's user networking (libslirp inside QEMU, MTU 1500)
#                    and hostfwd
#   passt          - the same hand-written line with -netdev stream to Debian's passt, forwarding the same ports; the
#                    device gets passt's MTU (65520) through host_mtu, since the test guest's DHCP client ignores the
#                    MTU option
# The machine is shared and its load drifts, so comparisons are paired: lkrun on its default link (the anchor) runs
# alongside one other setup at a time (two VMs): lkrun on the other link, then qemu, then passt; the two take turns,
# transfer by transfer, ROUNDS times over. With BASELINE=/path/to/an/older/lkrun, that binary (on whatever link it
# picks by default) is paired with the anchor first, to see a change side by side with what it changes. Each turn moves 64 MiB host to
# guest (into dd behind busybox nc), 64 MiB guest to host (from dd), and counts HTTP/1.0 connections per second to
# busybox httpd for 2 s. Figures are medians over the rounds; ratios compare the medians of the same phase. Each
# VM first moves 4 MiB unmeasured, so QEMU's code translation is warm for both alike. A passt that dies is
# reported with its exit status, never skipped; a last boot probes passt with debug logging on, the setting under
# which Debian 12's passt was seen to crash on its first forwarded TCP connection.
#
# Usage: [BASELINE=OLD-LKRUN] bench/network.sh [ROUNDS]   (default 7; results also go to bench/results/network.txt)
# Needs the test guest (tests/images/build.sh; LKRUN_TEST_IMAGES overrides out/images), qemu-system-x86,
# passt and python3. BASE_PORT (default 25001) and the next five ports must be free.
set -euo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
rounds=${1:-7}
results="$repo/bench/results/network.txt"
guest=$images/guest/guest
client="$repo/bench/network_client.py"
size=$((64 << 20))
# The anchor is lkrun on the link QEMU gets by default; both lkrun setups name their link explicitly all the same.
default_link=$(sed -n 's/.*Default = NetworkLinkKind\.\([A-Za-z]*\);.*/\1/p' "$repo/src/Lkrun.Engines/Qemu/QemuNetworkLink.cs" | tr '[:upper:]' '[:lower:]')
case $default_link in
stream) other_link=datagram ;;
datagram) other_link=stream ;;
*) echo "cannot tell QEMU's default network link from src/Lkrun.Engines/Qemu/QemuNetworkLink.cs" >&2; exit 1 ;;
esac
anchor=lkrun-$default_link
baseline=${BASELINE:-}
[ -z "$baseline" ] || [ -x "$baseline" ] || { echo "BASELINE=$baseline is not an executable" >&2; exit 1; }
warmup=$((4 << 20))
base=${BASE_PORT:-25001}

for tool in qemu-system-x86_64 passt python3; do
    command -v "$tool" >/dev/null || { echo "$tool is not installed" >&2; exit 1; }
done
[ -f "$guest-kernel" ] || { echo "$guest-kernel is missing: build the test images with tests/images/build.sh" >&2; exit 1; }
"$repo/lkrun" --help >/dev/null

work=$(mktemp -d "${TMPDIR:-/tmp}/lkrun-bench-net.XXXXXX")
declare -A vm_pid console
passt_pid=
cleanup() {
    for pid in "${vm_pid[@]}" $passt_pid; do kill "$pid" 2>/dev/null || true; done
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
"$lkrun_binary" metadata create "$work/data.iso" -data-file "$work/user-data"
cmdline="$(cat "$guest-cmdline") lkrun.bench_blocks=$((size / 65536))"
image="$work/guest"
ln -s "$guest-kernel" "$image-kernel"
ln -s "$guest-initrd.img" "$image-initrd.img"
echo "$cmdline" >"$image-cmdline"

# passt drops to nobody before it binds its socket, so nobody must reach the socket's directory and write in it.
chmod 711 "$work"
mkdir -m 1777 "$work/passt"

# Host ports of a setup: the anchor always uses the first three, the setup beside it the next three.
sink_port() { echo $(($1 + 0)); }
source_port() { echo $(($1 + 1)); }
http_port() { echo $(($1 + 2)); }

hand_written_qemu() {
    local log=$1 device=$2; shift 2
    # exec, so that the pid of the background job is QEMU's own.
    exec qemu-system-x86_64 -nodefaults -no-user-config -machine q35 -accel tcg -cpu max -smp 1 -m 256 \
        -display none -no-reboot \
        -kernel "$guest-kernel" -initrd "$guest-initrd.img" -append "$cmdline" \
        -serial "file:$log" \
        -drive "if=none,id=cd,file=$work/data.iso,format=raw,media=cdrom,readonly=on" -device ide-cd,drive=cd,bus=ide.1 \
        "$@" -device "virtio-net-pci,netdev=n0$device"
}

boot() {
    local setup=$1 ports=$2
    local sink source http
    sink=$(sink_port "$ports") source=$(source_port "$ports") http=$(http_port "$ports")
    console[$setup]="$work/$setup-console.log"
    case $setup in
    lkrun-* | baseline)
        rm -rf "$work/state-$setup"
        console[$setup]="$work/state-$setup/console.log"
        local binary=$lkrun_binary link=${setup#lkrun-}
        if [ "$setup" = baseline ]; then binary=$baseline link=; fi
        LKRUN_QEMU_NET_LINK=$link XDG_STATE_HOME="$work/xdg-$setup" "$binary" run -mem 256 -console-file \
            -state "$work/state-$setup" -data-file "$work/user-data" \
            -publish "$sink:5001" -publish "$source:5002" -publish "$http:80" "$image" >"$work/$setup.log" 2>&1 &
        ;;
    qemu)
        hand_written_qemu "${console[$setup]}" "" -netdev "user,id=n0,net=192.168.65.0/24,host=192.168.65.1,dns=192.168.65.254,dhcpstart=192.168.65.3,ipv6=off,hostfwd=tcp:127.0.0.1:$sink-192.168.65.3:5001,hostfwd=tcp:127.0.0.1:$source-192.168.65.3:5002,hostfwd=tcp:127.0.0.1:$http-192.168.65.3:80" \
            >"$work/qemu.log" 2>&1 &
        ;;
    passt)
        rm -f "$work/passt/passt.sock"
        # shellcheck disable=SC2086
        passt -f ${passt_logging:--q} -1 -s "$work/passt/passt.sock" \
            -t "127.0.0.1/$sink:5001" -t "127.0.0.1/$source:5002" -t "127.0.0.1/$http:80" >"$work/passt.log" 2>&1 &
        passt_pid=$!
        for _ in $(seq 100); do [ -S "$work/passt/passt.sock" ] && break; sleep 0.05; done
        hand_written_qemu "${console[$setup]}" ,host_mtu=65520 -netdev "stream,id=n0,server=off,addr.type=unix,addr.path=$work/passt/passt.sock" \
            >"$work/passt-qemu.log" 2>&1 &
        ;;
    esac
    vm_pid[$setup]=$!
}

wait_ready() {
    local setup=$1
    for _ in $(seq 1200); do
        grep -q "lkrun-guest: user-data exit 0" "${console[$setup]}" 2>/dev/null && return 0
        kill -0 "${vm_pid[$setup]}" 2>/dev/null || break
        sleep 0.1
    done
    echo "$setup: the guest did not get ready; see $work (kept)" >&2
    KEEP_WORK=1
    exit 1
}

stop() {
    local setup=$1
    kill -TERM "${vm_pid[$setup]}" 2>/dev/null || true
    wait "${vm_pid[$setup]}" 2>/dev/null || true
    unset 'vm_pid[$setup]'
    if [ "$setup" = passt ] && [ -n "$passt_pid" ]; then
        kill "$passt_pid" 2>/dev/null || true
        wait "$passt_pid" 2>/dev/null || true
        passt_pid=
    fi
}

# One measurement; "failed" when the transfer fails (details in client.log).
measure() {
    timeout 120 python3 "$client" "$@" 2>>"$work/client.log" || echo failed
}

# Whether passt is still there after a measurement; a dead passt is reported with its exit status and the
# measurement it died in.
passt_alive() {
    [ -z "$passt_pid" ] && return 0
    kill -0 "$passt_pid" 2>/dev/null && return 0
    local status=0
    wait "$passt_pid" || status=$?
    echo "exit status $status$( [ $status -gt 128 ] && echo " (signal $((status - 128)))") during $1" >>"$work/passt-crashes"
    passt_pid=
    return 1
}

# CPU time, in clock ticks, of the processes that carry a setup's traffic: QEMU, and lkrun or passt beside it.
cpu_ticks() {
    local pids total=0 pid
    case $1 in
    lkrun-* | baseline) pids="${vm_pid[$1]} $(cat "$work/state-$1/qemu.pid")" ;;
    qemu) pids=${vm_pid[qemu]} ;;
    passt) pids="${vm_pid[passt]} $passt_pid" ;;
    esac
    for pid in $pids; do
        total=$((total + $(awk '{print $14 + $15}' "/proc/$pid/stat" 2>/dev/null || echo 0)))
    done
    echo "$total"
}

# One turn of one setup, into $figures: host->guest, guest->host, conn/s, then the CPU milliseconds the two
# transfers took; "crashed" for what passt did not live through.
turn() {
    local setup=$1 ports=$2 kind value before cpu=()
    local ms_per_tick=$((1000 / $(getconf CLK_TCK)))
    figures=()
    for kind in h2g g2h cps; do
        before=$(cpu_ticks "$setup")
        case $kind in
        h2g) value=$(measure h2g "$(sink_port "$ports")" "$size") ;;
        g2h) value=$(measure g2h "$(source_port "$ports")" "$size") ;;
        cps) value=$(measure cps "$(http_port "$ports")" 2) ;;
        esac
        [ "$kind" = cps ] || cpu+=($(( ($(cpu_ticks "$setup") - before) * ms_per_tick )))
        if [ "$setup" = passt ] && ! passt_alive "$kind"; then
            figures=(crashed crashed crashed crashed crashed)
            return
        fi
        figures+=("$value")
    done
    figures+=("${cpu[@]}")
}

: >"$work/samples"
pairs=("lkrun-$other_link" qemu passt)
[ -z "$baseline" ] || pairs=(baseline "${pairs[@]}")
for other in "${pairs[@]}"; do
    boot "$anchor" "$base"
    boot "$other" $((base + 3))
    wait_ready "$anchor"
    wait_ready "$other"
    measure h2g "$(sink_port "$base")" "$warmup" >/dev/null
    measure h2g "$(sink_port $((base + 3)))" "$warmup" >/dev/null
    passt_alive warm-up || true
    for round in $(seq "$rounds"); do
        # Alternate which of the two goes first.
        if [ $((round % 2)) = 1 ]; then order="$anchor $other"; else order="$other $anchor"; fi
        for setup in $order; do
            if [ "$setup" = "$anchor" ]; then ports=$base; else ports=$((base + 3)); fi
            if [ "$setup" = passt ] && [ -z "$passt_pid" ]; then
                figures=(crashed crashed crashed crashed crashed)
            else
                turn "$setup" "$ports"
            fi
            echo "$other $setup ${figures[*]}" | tee -a "$work/samples" >&2
            cut -d' ' -f1 /proc/loadavg >>"$work/loads"
        done
    done
    stop "$other"
    stop "$anchor"
done

# Debian 12's passt was seen to crash on the first forwarded TCP connection: probe that once more, with the
# debug logging (-d -e) the crash was first seen with, since the runs above log quietly.
passt_logging="-d -e"
boot passt $((base + 3))
wait_ready passt
measure h2g "$(sink_port $((base + 3)))" "$warmup" >/dev/null
if passt_alive "the first forwarded connection with -d -e"; then
    echo "passt with -d -e: first forwarded TCP connection survived" >"$work/passt-debug-probe"
else
    echo "passt with -d -e: $(tail -1 "$work/passt-crashes")" >"$work/passt-debug-probe"
    sed -i '$d' "$work/passt-crashes"
    [ -s "$work/passt-crashes" ] || rm "$work/passt-crashes"
fi
stop passt

{
    echo "# NAT network through published ports, test guest under TCG on $(nproc) shared CPUs; $anchor (lkrun on QEMU's default link) paired with each other setup, turns alternating, median of $rounds turns"
    echo "# $(date -u +%Y-%m-%dT%H:%MZ), $(qemu-system-x86_64 --version | head -1), passt $(dpkg-query -W -f '${Version}' passt 2>/dev/null || echo unknown), lkrun $(git -C "$repo" rev-parse --short HEAD)${baseline:+, baseline $baseline}"
    echo "# machine load while measuring (1-minute load average at each turn): $(sort -g "$work/loads" | awk '{ v[NR] = $1 } END { printf "median %s, range %s-%s", v[int((NR + 1) / 2)], v[1], v[NR] }')"
    echo "# host->guest and guest->host: 64 MiB over one TCP connection (MiB/s); conn/s: HTTP/1.0 GET per new connection to busybox httpd for 2 s"
    echo "# cpu ms: CPU time of QEMU plus lkrun or passt during one 64 MiB transfer (less sensitive to the machine's load than MiB/s)"
    python3 - "$work/samples" "$work/passt-crashes" "$anchor" "${pairs[@]}" <<'REPORT'
import os, statistics, sys
samples = {}
for line in open(sys.argv[1]):
    phase, setup, *values = line.split()
    samples.setdefault((phase, setup), []).append(values)
metrics = ["host->guest", "guest->host", "conn/s", "cpu ms h->g", "cpu ms g->h"]
def numbers(key, i):
    return sorted(float(v[i]) for v in samples.get(key, []) if v[i] not in ("crashed", "failed"))
def median(key, i):
    values = numbers(key, i)
    return statistics.median(values) if values else None
def spread(key, i):
    values = numbers(key, i)
    return f"{values[0]:.0f}-{values[-1]:.0f}" if values else "-"
anchor, phases = sys.argv[3], sys.argv[4:]
print(f"{'setup':16}" + "".join(f"{m:>12}" for m in metrics) + "  failed  (ranges)")
for phase in phases:
    print(f"{anchor} paired with {phase}:")
    for setup in [anchor, phase]:
        key = (phase, setup)
        bad = sum(1 for v in samples.get(key, []) if "crashed" in v or "failed" in v)
        values = "".join(f"{median(key, i):12.1f}" if median(key, i) is not None else f"{'-':>12}" for i in range(len(metrics)))
        ranges = " ".join(spread(key, i) for i in range(len(metrics)))
        print(f"  {setup:14}{values}  {bad:6}  ({ranges})")
for phase in phases:
    ratios = []
    for i, m in enumerate(metrics):
        a, b = median((phase, anchor), i), median((phase, phase), i)
        ratios.append(f"{m} {a / b:.2f}" if a and b else f"{m} -")
    print(f"ratio {anchor}/{phase}: " + ", ".join(ratios))
print(f"(ratios: 1.00 is the same; above 1 {anchor} is faster, or for cpu ms uses more CPU per 64 MiB)")
crashes = sys.argv[2]
passt_turns = len(samples.get(("passt", "passt"), []))
if os.path.exists(crashes):
    print("passt died: " + "; ".join(l.strip() for l in open(crashes)))
else:
    print(f"passt: no crash over {passt_turns} turns: {passt_turns * 2 + 1} forwarded TCP transfers of 4-64 MiB and {passt_turns} connection-rate runs of 2 s")
REPORT
    cat "$work/passt-debug-probe"
} | tee "$results"
