#!/usr/bin/env bash
# Where lkrun's kernel+initrd boot spends the time it takes over the best hand-written line (PVH on microvm, no
# device), on the test kernel with printk timestamps, alternating, medians:
#   - each run gives the wall time to the kernel's "Run /init" line and the guest clock's time of that line; the
#     first less the second is the host side (lkrun's start-up, QEMU's start and device set-up, the firmware), the
#     guest time is the kernel's own boot, where it probes lkrun's devices;
#   - then the guest's probe time of each of lkrun's virtio devices (initcall_debug): the RNG, the virtio console and
#     the network alone on the bare line, the vsock device (it needs lkrun's vhost-user back end) in lkrun's VM.
# Usage: bench/boot-gap.sh [RUNS]     (results: bench/results/boot-gap.txt)
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
runs=${1:-9}
guest=$images/guest/guest
[ -f "$guest-kernel" ] || { echo "boot-gap.sh: build the test images first (tests/images/build.sh)" >&2; exit 1; }
[ -x "$lkrun_binary" ] || { echo "boot-gap.sh: build lkrun first (./lkrun --help)" >&2; exit 1; }
tsc_khz=$(awk -F': ' '/^cpu MHz/ { printf "%d", $2 * 1000; exit }' /proc/cpuinfo)

work=$(mktemp -d /tmp/lkbench.XXXXXX)
trap 'rm -rf "$work"' EXIT
export XDG_CACHE_HOME=$work/cache XDG_STATE_HOME=$work/xdg

# image CMDLINE: the test guest's kernel and initrd with CMDLINE, as $work/image-*.
image() {
    ln -sf "$guest-kernel" "$work/image-kernel"
    ln -sf "$guest-initrd.img" "$work/image-initrd.img"
    echo "$1" > "$work/image-cmdline"
}

lkrun_run() {
    rm -rf "$work/state"
    python3 "$bench_root/lib/time_to_marker.py" "$1" 240 "${@:2}" -- \
        "$lkrun_binary" run -accel tcg -mem 256 -state "$work/state" "$work/image"
}

# bare_line SERIAL DEVICES...: the best hand-written line with its serial port on SERIAL, plus the given devices.
bare_line() {
    echo "qemu-system-x86_64 -accel tcg -cpu max -m 256 -smp 1 -nodefaults -no-user-config -display none \
-serial $1 -no-reboot -machine microvm,acpi=on -kernel $elf -initrd $work/image-initrd.img ${*:2} \
-append '$(cat "$work/image-cmdline") tsc_early_khz=$tsc_khz tsc=reliable'"
}

# bare_log DEVICES...: boots the bare line with the devices until the guest's init starts, its console in $work/log.
bare_log() {
    rm -f "$work/log"
    sh -c "exec $(bare_line "file:$work/log" "$@")" > /dev/null 2>&1 &
    local qemu=$!
    for _ in $(seq 600); do
        grep -q "lkrun-guest: init started" "$work/log" 2>/dev/null && break
        sleep 0.1
    done
    kill "$qemu"
    wait "$qemu" || true
}

# probe_ms LOG AFTER: the guest's probe time, in ms, of the first virtio device probed after a line matching AFTER.
probe_ms() {
    awk -v after="$2" '$0 ~ after { armed = 1 } armed && /probe of virtio[0-9]+ returned 0 after/ {
        for (i = 1; i <= NF; i++) if ($i == "after") { printf "%.1f\n", $(i + 1) / 1000; exit } }' "$1"
}

image "console=ttyS0 printk.time=1"
lkrun_run "Run /init" > /dev/null   # puts the decompressed ELF into the cache
elf=$(echo "$XDG_CACHE_HOME"/lkrun/kernels/*.vmlinux)

{
    echo "lkrun's kernel+initrd boot against the best hand-written line, split at the kernel's 'Run /init' ($runs runs each, alternating, medians), $(date -u +%Y-%m-%dT%H:%MZ)"
    machine_line
    lkrun_wall=() lkrun_guest=() bare_wall=() bare_guest=()
    for _ in $(seq "$runs"); do
        read -r wall guest_time < <(lkrun_run "Run /init" --guest-clock)
        lkrun_wall+=("$wall") lkrun_guest+=("$guest_time")
        read -r wall guest_time < <(python3 "$bench_root/lib/time_to_marker.py" "Run /init" 240 --guest-clock -- sh -c "exec $(bare_line stdio)")
        bare_wall+=("$wall") bare_guest+=("$guest_time")
    done
    lw=$(median "${lkrun_wall[@]}") lg=$(median "${lkrun_guest[@]}") bw=$(median "${bare_wall[@]}") bg=$(median "${bare_guest[@]}")
    host() { awk -v w="$1" -v g="$2" 'BEGIN { printf "%.3f", w - g }'; }
    echo "lkrun: wall ${lw}s = host side $(host "$lw" "$lg")s + guest ${lg}s"
    echo "best line: wall ${bw}s = host side $(host "$bw" "$bg")s + guest ${bg}s"
    echo "  lkrun wall: ${lkrun_wall[*]}"
    echo "  lkrun guest: ${lkrun_guest[*]}"
    echo "  best wall: ${bare_wall[*]}"
    echo "  best guest: ${bare_guest[*]}"

    image "console=ttyS0 printk.time=1 initcall_debug loglevel=8"
    declare -A device_args=(
        [rng]="-device virtio-rng-device"
        [console]="-device virtio-serial-device,id=vs0 -chardev null,id=c0 -device virtconsole,chardev=c0,bus=vs0.0"
        [network]="-netdev user,id=n0,restrict=on -device virtio-net-device,netdev=n0,host_mtu=65520"
    )
    for device in rng console network vsock; do
        times=()
        for _ in $(seq "$runs"); do
            if [ "$device" = vsock ]; then
                rm -rf "$work/state"
                timeout 60 "$lkrun_binary" run -accel tcg -mem 256 -networking none -state "$work/state" "$work/image" \
                    < /dev/null 2>/dev/null | sed '/lkrun-guest: init started/q' > "$work/log" || true
                times+=("$(probe_ms "$work/log" "PF_VSOCK")")
            else
                # The device is the only virtio device on the line: the first probe.
                bare_log -global virtio-mmio.force-legacy=false ${device_args[$device]}
                times+=("$(probe_ms "$work/log" "")")
            fi
        done
        echo "guest probe of the $device device: $(median "${times[@]}") ms (runs: ${times[*]})"
    done
} | tee "$bench_root/results/boot-gap.txt"
