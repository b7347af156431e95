#!/usr/bin/env bash
# vsock throughput and latency: lkrun's vhost-user vsock device (through <state>/guest.PPPPPPPP and
# <state>/00000002.PPPPPPPP) against QEMU's own virtio-serial port on a unix-socket chardev, in the same guest and
# the same run, transfers alternating. QEMU 7.2, TCG, q35, 1 vCPU, 512 MiB.
#   host -> guest: SIZE MiB into the guest tool's discard service / into dd of=/dev/null reading the port
#   guest -> host: SIZE MiB of zeros from one buffer (bench/vsock-zero-send.c) / dd if=/dev/zero into the port
#   round trip:    PINGS one-byte messages to the guest tool's echo service / to cat echoing the port
# Each figure is the median of RUNS runs. The guest is the test guest (out/images/guest, LKRUN_TEST_IMAGES) with
# vsock-zero-send appended to its initrd as a second cpio archive. Under TCG the guest's vCPU is the bottleneck, so
# the figures move with the machine's load by +-30% from run to run; compare the columns of one run.
#
# Why a round trip costs more over vsock: under TCG QEMU's virtio-serial handles the guest's write synchronously
# in the vCPU thread and the guest driver reads in its interrupt handler, while a vhost-user device is reached
# through eventfds (a kick wakes the device thread, a call wakes QEMU's main loop, which interrupts the vCPU) and
# Linux's virtio-vsock driver moves every packet through a workqueue in each direction. The device's own share,
# from wake-up to the system call that passes the byte on, measured about 14 us per direction.
#
# Usage: bench/vsock.sh [SIZE_MIB] [RUNS] [PINGS]   (default 64 5 2000; results also go to bench/results/vsock.txt)
#
# Before and after a change: VSOCK_BASELINE=REF bench/vsock.sh [SIZE_MIB] [RUNS] [PINGS] runs the bench of git REF
# (its own bench/vsock-bench.cs and src/, exported with git archive) and this tree's side by side, RUNS runs each
# (default 12), in rounds of 3 runs per boot that alternate ABBA, so that the machine's drifting load falls on both
# alike. The figures are medians over all runs; virtio-serial, the same code in both, shows how alike their conditions
# were, and vsock's figure divided by virtio-serial's of the same run takes most of the load's drift out. With
# BENCH_LOCK=FILE each boot runs under flock FILE, so that other VMs wait between boots.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

size_mib=${1:-64}
runs=${2:-5}
pings=${3:-2000}
results="$repo/bench/results/vsock.txt"
guest=$images/guest/guest
for suffix in -kernel -initrd.img -cmdline; do
    [ -f "$guest$suffix" ] || { echo "$guest$suffix is missing: build the test images with tests/images/build.sh" >&2; exit 1; }
done
command -v qemu-system-x86_64 >/dev/null || { echo "qemu-system-x86_64 is not installed" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/lkrun-bench-vsock.XXXXXX")
trap 'rm -rf "$work"' EXIT

mkdir -p "$work/extra/bin"
gcc -static -O2 -Wall -Wextra -Werror -o "$work/extra/bin/vsock-zero-send" "$repo/bench/vsock-zero-send.c"
(cd "$work/extra" && echo bin/vsock-zero-send | cpio -o -H newc -R 0:0 --quiet | gzip -1 >"$work/extra.cpio.gz")
cat "$guest-initrd.img" "$work/extra.cpio.gz" >"$work/guest-initrd.img"
ln -s "$guest-kernel" "$work/guest-kernel"
cp "$guest-cmdline" "$work/guest-cmdline"

# side_by_side REF: rounds of RUNS_PER_BOOT runs of REF's bench and of this tree's, in ABBA order; prints both.
side_by_side() {
    local ref=$1 per_boot=3 rounds round order tree dir
    rounds=$(((runs + per_boot - 1) / per_boot))
    mkdir -p "$work/baseline"
    git -C "$repo" archive "$ref" | tar -x -C "$work/baseline"
    echo "lkrun vsock device: $ref ($(git -C "$repo" rev-parse --short "$ref")) and this tree ($(git -C "$repo" rev-parse --short HEAD)$(git -C "$repo" diff --quiet HEAD -- src bench || echo ' with changes')) side by side, $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "$(qemu-system-x86_64 --version | head -1), TCG, q35, 1 vCPU, 512 MiB; guest kernel $(file -b "$guest-kernel" | grep -o 'version [^ ]*')"
    echo "host: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "${size_mib} MiB transfers, ${pings} round trips; median of $((rounds * per_boot)) runs each, $per_boot per boot, boots alternating ABBA (MB = 10^6 bytes)"
    for round in $(seq 1 "$rounds"); do
        order="baseline current"
        case $((round % 4)) in 2 | 3) order="current baseline" ;; esac
        for tree in $order; do
            dir=$repo
            [ "$tree" = baseline ] && dir=$work/baseline
            echo "round $round of $rounds: $tree" >&2
            ${BENCH_LOCK:+flock "$BENCH_LOCK"} dotnet run -c Release "$dir/bench/vsock-bench.cs" -- "$work/guest" "$size_mib" "$per_boot" "$pings" >"$work/$tree.$round.txt"
        done
    done
    echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo
    # Both benches end with the same "every run" lines: two spaces, a name, then one figure per run.
    awk -v ref="$ref" '
        function median(list,   v, n, i, j, t) {
            n = split(list, v, " ")
            for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (v[j] + 0 < v[i] + 0) { t = v[i]; v[i] = v[j]; v[j] = t }
            return n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
        }
        function ratios(first, second,   f, g, n, i, list) {
            n = split(first, f, " "); split(second, g, " ")
            for (i = 1; i <= n; i++) list = list " " f[i] / g[i]
            return list
        }
        FNR == 1 { tree = FILENAME; sub(/.*\//, "", tree); sub(/\..*/, "", tree) }
        /^  (vsock|serial) / {
            name = ""; figures = ""
            for (i = 1; i <= NF; i++) if ($i ~ /^[0-9.]+$/) figures = figures " " $i; else name = name (name == "" ? "" : " ") $i
            values[tree SUBSEP name] = values[tree SUBSEP name] figures
        }
        END {
            split("vsock host->guest|vsock guest->host|vsock round trip|serial host->guest|serial guest->host|serial round trip", order, "|")
            printf "%-40s %12s %12s %8s\n", "", ref, "this tree", "ratio"
            for (i = 1; i <= 6; i++) {
                unit = order[i] ~ /round trip/ ? "us, lower is better" : "MB/s"
                b = median(values["baseline" SUBSEP order[i]]); c = median(values["current" SUBSEP order[i]])
                printf "%-40s %12.1f %12.1f %7.2fx\n", order[i] " (" unit ")", b, c, c / b
            }
            print ""
            print "vsock / virtio-serial within each run, where the load falls on both alike (median of the per-run ratios):"
            split("host->guest|guest->host|round trip", kinds, "|")
            for (i = 1; i <= 3; i++) {
                b = median(ratios(values["baseline" SUBSEP "vsock " kinds[i]], values["baseline" SUBSEP "serial " kinds[i]]))
                c = median(ratios(values["current" SUBSEP "vsock " kinds[i]], values["current" SUBSEP "serial " kinds[i]]))
                printf "%-40s %12.3f %12.3f %7.2fx\n", kinds[i] (kinds[i] ~ /round trip/ ? " (lower is better)" : ""), b, c, c / b
            }
            print ""
            print "every run (MB/s or us):"
            for (i = 1; i <= 6; i++) {
                printf "  %-30s%s\n", order[i] " " ref, values["baseline" SUBSEP order[i]]
                printf "  %-30s%s\n", order[i] " this tree", values["current" SUBSEP order[i]]
            }
        }' "$work"/baseline.*.txt "$work"/current.*.txt
}

if [ -n "${VSOCK_BASELINE:-}" ]; then
    runs=${2:-12}
    side_by_side "$VSOCK_BASELINE" | tee "$results"
    exit 0
fi

{
    echo "lkrun vsock device vs QEMU virtio-serial, $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "$(qemu-system-x86_64 --version | head -1), TCG, q35, 1 vCPU, 512 MiB; guest kernel $(file -b "$guest-kernel" | grep -o 'version [^ ]*')"
    echo "host: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "${size_mib} MiB transfers, ${pings} round trips, median of ${runs} runs (MB = 10^6 bytes)"
    echo
    dotnet run -c Release "$repo/bench/vsock-bench.cs" -- "$work/guest" "$size_mib" "$runs" "$pings"
} | tee "$results"
