#!/usr/bin/env bash
# Boot time to the guest's "init started" marker: lkrun's default path (PVH entry, microvm where the kernel allows
# it) against hand-written minimal QEMU command lines for the same files, alternating in one run, medians:
#   - q35 + bzImage: the classic line, the guest decompressing its own kernel;
#   - the best hand-written line: PVH entry into the decompressed ELF (taken from lkrun's cache), on microvm with
#     ACPI for the test kernel, on q35 for Debian's kernel (its virtio-mmio is a module, so microvm cannot apply).
# Also lkrun's own cost, from its exec to QEMU's: for the first boot of a kernel (decompressing and caching it,
# measured with an empty cache and a stand-in QEMU that exits at once) and for later boots (hashing the bzImage,
# reading the cached ELF: the timed boots, which all find the kernel cached).
# The marker is the first line the guest's init prints, before it starts services: what the init does after it
# depends on the devices it finds (lkrun's VM has a network, a vsock device and a virtio console; the minimal lines
# have none of them), while everything up to it is firmware, kernel and device probing, which all lines share.
# Under TCG a microvm guest needs the host's TSC frequency on its command line (see src/Lkrun.Engines/Qemu/HostTsc.cs).
# Usage: bench/boot.sh [initrd|squashfs|demo|all] [RUNS]     (results: bench/results/boot.txt)
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
methods=${1:-all}
runs=${2:-7}
[ "$methods" = all ] && methods="initrd squashfs demo"
guest=$images/guest/guest
demo=$images/demo/demo
[ -f "$guest-kernel" ] && [ -f "$demo-kernel" ] || { echo "boot.sh: build the test images first (tests/images/build.sh)" >&2; exit 1; }
[ -x "$lkrun_binary" ] || { echo "boot.sh: build lkrun first (./lkrun --help)" >&2; exit 1; }
tsc_khz=$(awk -F': ' '/^cpu MHz/ { printf "%d", $2 * 1000; exit }' /proc/cpuinfo)

work=$(mktemp -d /tmp/lkbench.XXXXXX)
trap 'rm -rf "$work"' EXIT
marker="lkrun-guest: init started"
export XDG_CACHE_HOME=$work/cache
kernels=$XDG_CACHE_HOME/lkrun/kernels

# A stand-in for qemu-system-x86_64 that notes when lkrun started it, then becomes the real one.
cat > "$work/qemu-timestamp" <<WRAPPER
#!/bin/sh
date +%s%N > "$work/qemu-started"
exec qemu-system-x86_64 "\$@"
WRAPPER
# The same for lkrun itself, so its start-up is measured from its own exec.
cat > "$work/lkrun-timestamp" <<WRAPPER
#!/bin/sh
date +%s%N > "$work/lkrun-started"
exec "$lkrun_binary" "\$@"
WRAPPER
# A stand-in that only notes the time: lkrun's first-boot cost without booting anything.
cat > "$work/qemu-stub" <<WRAPPER
#!/bin/sh
date +%s%N > "$work/qemu-started"
exit 1
WRAPPER
chmod +x "$work/qemu-timestamp" "$work/lkrun-timestamp" "$work/qemu-stub"

source_of() { case $1 in demo) echo "$demo" ;; *) echo "$guest" ;; esac; }

prepare() {
    local method=$1 image=$work/$1/image source
    source=$(source_of "$method")
    mkdir -p "$work/$method"
    ln -sf "$source-kernel" "$image-kernel"
    case $method in
        squashfs) ln -sf "$guest-squashfs.img" "$image-squashfs.img" ;;
        *) ln -sf "$source-initrd.img" "$image-initrd.img" ;;
    esac
    echo "console=ttyS0" > "$image-cmdline"
}

# The decompressed ELF lkrun keeps for the image's kernel.
cached_elf() { echo "$kernels/$(sha256sum < "$(source_of "$1")-kernel" | cut -d' ' -f1).vmlinux"; }

common="qemu-system-x86_64 -accel tcg -cpu max -m 256 -smp 1 -nodefaults -no-user-config -display none -serial stdio -no-reboot"

# hand_line METHOD q35|best: the hand-written QEMU command line.
hand_line() {
    local method=$1 line=$2 image=$work/$1/image kernel machine append="console=ttyS0" boot
    if [ "$line" = q35 ]; then
        kernel=$image-kernel machine=q35
    else
        kernel=$(cached_elf "$method")
        if [ "$method" = demo ]; then machine=q35; else machine=microvm,acpi=on append="$append tsc_early_khz=$tsc_khz tsc=reliable"; fi
    fi
    case $method in
        squashfs)
            local device=virtio-blk-pci
            [ "${machine%%,*}" = microvm ] && device=virtio-blk-device
            boot="-drive if=none,id=root,file=$image-squashfs.img,format=raw,readonly=on -device $device,drive=root"
            append="$append root=/dev/vda" ;;
        *) boot="-initrd $image-initrd.img" ;;
    esac
    echo "$common -machine $machine -kernel $kernel $boot -append '$append'"
}

lkrun_once() {
    local method=$1
    rm -rf "$work/state"
    python3 "$bench_root/lib/time_to_marker.py" "$marker" 240 -- \
        "$work/lkrun-timestamp" run -accel tcg -mem 256 -qemu "$work/qemu-timestamp" -state "$work/state" "$work/$method/image"
}

# lkrun with an empty cache up to QEMU's exec, which the stand-in ends there.
first_boot_cost() {
    local method=$1
    rm -rf "$work/state" "$kernels"
    "$work/lkrun-timestamp" run -accel tcg -mem 256 -qemu "$work/qemu-stub" -state "$work/state" "$work/$method/image" \
        > /dev/null 2>&1 < /dev/null || true
    startup_ms
}

startup_ms() { echo $(( ($(cat "$work/qemu-started") - $(cat "$work/lkrun-started")) / 1000000 )); }

{
    echo "boot time to '$marker' ($runs runs each, alternating, medians), $(date -u +%Y-%m-%dT%H:%MZ)"
    machine_line
    for method in $methods; do
        prepare "$method"
        lkrun_times=() q35_times=() best_times=() first_startups=() startups=()
        for run in $(seq "$runs"); do
            first_startups+=("$(first_boot_cost "$method")")
            lkrun_times+=("$(lkrun_once "$method")")
            startups+=("$(startup_ms)")
            q35_times+=("$(python3 "$bench_root/lib/time_to_marker.py" "$marker" 240 -- sh -c "exec $(hand_line "$method" q35)")")
            best_times+=("$(python3 "$bench_root/lib/time_to_marker.py" "$marker" 240 -- sh -c "exec $(hand_line "$method" best)")")
        done
        l=$(median "${lkrun_times[@]}") q=$(median "${q35_times[@]}") b=$(median "${best_times[@]}")
        echo "$method: lkrun ${l}s, hand-written q35+bzImage ${q}s (lkrun ratio $(ratio "$l" "$q")), hand-written best ${b}s (lkrun ratio $(ratio "$l" "$b"))"
        echo "  best line: $(hand_line "$method" best | sed "s|$work|WORK|g")"
        echo "  lkrun exec to QEMU exec: first boot of the kernel $(median "${first_startups[@]}") ms, later boots $(median "${startups[@]}") ms (medians)"
        echo "  lkrun runs: ${lkrun_times[*]}"
        echo "  q35 runs:   ${q35_times[*]}"
        echo "  best runs:  ${best_times[*]}"
    done
} | tee "$bench_root/results/boot.txt"
