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

{
    echo "lkrun vsock device vs QEMU virtio-serial, $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "$(qemu-system-x86_64 --version | head -1), TCG, q35, 1 vCPU, 512 MiB; guest kernel $(file -b "$guest-kernel" | grep -o 'version [^ ]*')"
    echo "host: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "${size_mib} MiB transfers, ${pings} round trips, median of ${runs} runs (MB = 10^6 bytes)"
    echo
    dotnet run -c Release "$repo/bench/vsock-bench.cs" -- "$work/guest" "$size_mib" "$runs" "$pings"
} | tee "$results"
