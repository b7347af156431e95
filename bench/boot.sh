#!/usr/bin/env bash
# Boot time to the guest's "init started" marker: lkrun against a hand-written minimal QEMU command line for the same
# files and the same machine type, alternating in one run, medians. Also lkrun's own start-up: from its exec to QEMU's.
# The marker is the first line the guest's init prints, before it starts services: what the init does after it
# depends on the devices it finds (lkrun's VM has a network, a vsock device and a virtio console; the minimal line
# has none of them), while everything up to it is firmware, kernel and device probing, which both lines share.
# Usage: bench/boot.sh [initrd|squashfs|efi-iso|all] [RUNS]     (results: bench/results/boot.txt)
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
methods=${1:-all}
runs=${2:-7}
[ "$methods" = all ] && methods="initrd squashfs efi-iso"
guest=$images/guest/guest
[ -f "$guest-kernel" ] || { echo "boot.sh: build the test images first (tests/images/build.sh)" >&2; exit 1; }
[ -x "$lkrun_binary" ] || { echo "boot.sh: build lkrun first (./lkrun --help)" >&2; exit 1; }

work=$(mktemp -d /tmp/lkbench.XXXXXX)
trap 'rm -rf "$work"' EXIT
cmdline="console=ttyS0"
marker="lkrun-guest: init started"

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
chmod +x "$work/qemu-timestamp" "$work/lkrun-timestamp"

prepare() {
    local method=$1 image=$work/$1/image
    mkdir -p "$work/$method"
    case $method in
        initrd) ln -sf "$guest-kernel" "$image-kernel"; ln -sf "$guest-initrd.img" "$image-initrd.img" ;;
        squashfs) ln -sf "$guest-kernel" "$image-kernel"; ln -sf "$guest-squashfs.img" "$image-squashfs.img" ;;
        efi-iso) ln -sf "$guest.iso" "$image.iso" ;;
    esac
    echo "$cmdline" > "$image-cmdline"
}

lkrun_args() {
    case $1 in
        efi-iso) echo "-iso -uefi" ;;
        *) echo "" ;;
    esac
}

qemu_command() {
    local method=$1 image=$work/$1/image
    local common=(qemu-system-x86_64 -machine q35 -accel tcg -cpu max -m 256 -smp 1 -nodefaults -no-user-config
        -display none -serial stdio -no-reboot)
    case $method in
        initrd) echo "${common[*]} -kernel $image-kernel -initrd $image-initrd.img -append '$cmdline'" ;;
        squashfs) echo "${common[*]} -kernel $image-kernel -drive file=$image-squashfs.img,if=virtio,format=raw,readonly=on -append '$cmdline root=/dev/vda'" ;;
        efi-iso)
            cp /usr/share/OVMF/OVMF_VARS_4M.fd "$work/vars.fd"
            echo "${common[*]} -drive if=pflash,format=raw,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd -drive if=pflash,format=raw,file=$work/vars.fd -cdrom $image.iso" ;;
    esac
}

{
    echo "boot time to '$marker' ($runs runs each, alternating, medians), $(date -u +%Y-%m-%dT%H:%MZ)"
    machine_line
    for method in $methods; do
        prepare "$method"
        lkrun_times=() qemu_times=() startups=()
        for run in $(seq "$runs"); do
            rm -rf "$work/state"
            # shellcheck disable=SC2046
            lkrun_times+=("$(python3 "$bench_root/lib/time_to_marker.py" "$marker" 180 -- \
                "$work/lkrun-timestamp" run -accel tcg -mem 256 -qemu "$work/qemu-timestamp" -state "$work/state" $(lkrun_args "$method") "$work/$method/image")")
            startups+=("$(( ($(cat "$work/qemu-started") - $(cat "$work/lkrun-started")) / 1000000 ))")
            qemu_times+=("$(python3 "$bench_root/lib/time_to_marker.py" "$marker" 180 -- sh -c "exec $(qemu_command "$method")")")
        done
        l=$(median "${lkrun_times[@]}") q=$(median "${qemu_times[@]}") s=$(median "${startups[@]}")
        echo "$method: lkrun ${l}s, hand-written qemu ${q}s, ratio $(ratio "$l" "$q"); lkrun exec to QEMU exec ${s} ms (median)"
        echo "  lkrun runs: ${lkrun_times[*]}"
        echo "  qemu runs:  ${qemu_times[*]}"
    done
} | tee "$bench_root/results/boot.txt"
