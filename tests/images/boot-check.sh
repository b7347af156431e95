#!/usr/bin/env bash
# Boots the images from build.sh with plain QEMU command lines (q35, TCG) and checks the markers the guest's
# /init prints (tests/images/README.md), one VM at a time. Prints the time from QEMU's start to "ready".
# Usage: boot-check.sh [guest|demo|all]
# Needs qemu-system-x86, ovmf, genisoimage, socat, openssh-client, curl and perl besides the images.
set -uo pipefail
export LC_ALL=C

here=$(cd "$(dirname "$0")" && pwd)
images=$(cd "$here/../.." && pwd)/out/images
target=${1:-all}
case $target in
    guest | demo | all) ;;
    *) echo "usage: boot-check.sh [guest|demo|all]" >&2; exit 2 ;;
esac

# Consoles and QEMU's messages stay in out/images/boot-check for a look afterwards; sockets live in a
# short temporary path because unix socket paths are limited to 108 bytes.
logs=$images/boot-check
rm -rf "$logs"
mkdir -p "$logs"
work=$(mktemp -d "${TMPDIR:-/tmp}/lkrun-boot-check.XXXXXX")
declare -A qemu_pid=() console_log=() started_at=()
passed=0
failed=0
timings=()

cleanup() {
    local name
    for name in "${!qemu_pid[@]}"; do
        kill "${qemu_pid[$name]}" 2>/dev/null
    done
    wait 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT

pass() { echo "ok   $*"; passed=$((passed + 1)); }
fail() { echo "FAIL $*"; failed=$((failed + 1)); }
now() { date +%s.%N; }

# start NAME QEMU-ARGS...: the serial console goes to a unix socket (for typing) and to NAME.log.
start() {
    local name=$1
    shift
    console_log[$name]=$logs/$name.log
    started_at[$name]=$(now)
    echo "qemu-system-x86_64 $*" > "$logs/$name.qemu"
    qemu-system-x86_64 -machine q35 -accel tcg -m 512 -display none -monitor none -no-reboot \
        -chardev "socket,id=serial,path=$work/$name.sock,server=on,wait=off,logfile=$logs/$name.log" \
        -serial chardev:serial -qmp "unix:$work/$name.qmp,server=on,wait=off" "$@" \
        < /dev/null >> "$logs/$name.qemu" 2>&1 &
    qemu_pid[$name]=$!
}

running() { kill -0 "${qemu_pid[$1]}" 2>/dev/null; }

# wait_for NAME REGEX SECONDS: waits for a console line matching REGEX (extended, whole line).
wait_for() {
    local name=$1 regex=$2 deadline
    deadline=$(($(date +%s) + $3))
    while [ "$(date +%s)" -lt "$deadline" ]; do
        tr -d '\r' 2>/dev/null < "${console_log[$name]}" | grep -Eaxq "$regex" && return 0
        running "$name" || { tr -d '\r' 2>/dev/null < "${console_log[$name]}" | grep -Eaxq "$regex"; return; }
        sleep 0.2
    done
    return 1
}

wait_ready() {
    local name=$1 seconds=$2
    if wait_for "$name" 'lkrun-guest: ready' "$seconds"; then
        timings+=("$(printf '%-28s %5.1f s' "$name" "$(echo "$(now) - ${started_at[$name]}" | bc)")")
        return 0
    fi
    fail "$name: no 'lkrun-guest: ready' within $seconds s"
    show_console "$name"
    return 1
}

wait_exit() {
    local name=$1 deadline
    deadline=$(($(date +%s) + $2))
    while running "$name"; do
        if [ "$(date +%s)" -ge "$deadline" ]; then
            fail "$name: QEMU still running after $2 s"
            kill "${qemu_pid[$name]}"
            return 1
        fi
        sleep 0.2
    done
    unset "qemu_pid[$name]"
    return 0
}

show_console() {
    echo "---- last console lines of $1"
    tr -d '\r' < "${console_log[$1]}" | tail -n 25 | sed 's/^/     /'
    echo "----"
}

# expect NAME REGEX...: the guest's "lkrun-guest: " lines contain lines matching the REGEXes in this order.
expect() {
    local name=$1
    shift
    local missing
    missing=$(tr -d '\r' < "${console_log[$name]}" | grep -a '^lkrun-guest: ' | awk -v patterns="$(printf '%s\n' "$@")" '
        BEGIN { count = split(patterns, wanted, "\n"); if (wanted[count] == "") count--; next_wanted = 1 }
        next_wanted <= count && $0 ~ ("^" wanted[next_wanted] "$") { next_wanted++ }
        END { if (next_wanted <= count) print wanted[next_wanted] }')
    if [ -z "$missing" ]; then
        pass "$name: $# markers in order"
    else
        fail "$name: missing or out of order: $missing"
        show_console "$name"
    fi
}

qmp() {
    printf '{"execute":"qmp_capabilities"}\n{"execute":"%s"}\n' "$2" |
        socat -t 1 - "UNIX-CONNECT:$work/$1.qmp" > /dev/null
}

type_line() {
    printf '%s\r' "$2" | socat -t 1 - "UNIX-CONNECT:$work/$1.sock" > /dev/null
}

power_button() {
    local name=$1
    qmp "$name" system_powerdown
    if wait_for "$name" 'lkrun-guest: shutting down' 60 && wait_exit "$name" 60; then
        expect "$name" 'lkrun-guest: power button pressed' 'lkrun-guest: shutting down'
    else
        fail "$name: no shutdown after system_powerdown"
        show_console "$name"
    fi
}

free_port() { shuf -i 20000-60000 -n 1; }

uuid=6f1c0d2e-4d0b-4b1e-9a57-2f1f5c3e8a11
common_markers=('lkrun-guest: init started' "lkrun-guest: uuid $uuid")

# A CIDATA CD whose user-data adds the check's SSH key and proves it ran; its hashes are checked too.
make_metadata_iso() {
    local dir=$work/metadata
    mkdir -p "$dir"
    ssh-keygen -q -t ed25519 -N '' -f "$work/id_ed25519"
    cat > "$dir/user-data" <<EOF
#!/bin/sh
echo "$(cat "$work/id_ed25519.pub")" >> /root/.ssh/authorized_keys
echo "user-data says hello-\$((6*7))"
exit 3
EOF
    printf 'instance-id: check-1\nlocal-hostname: lkrun-check\n' > "$dir/meta-data"
    printf '{"check":"lkrun"}\n' > "$dir/config"
    genisoimage -quiet -V CIDATA -r -J -o "$work/metadata.iso" "$dir"
    metadata_markers=()
    local file
    for file in config user-data meta-data; do
        metadata_markers+=("lkrun-guest: metadata $file size=$(stat -c %s "$dir/$file") sha256=$(sha256sum < "$dir/$file" | cut -d' ' -f1)")
    done
    metadata_markers+=('lkrun-guest: meta-data instance-id: check-1' 'lkrun-guest: meta-data local-hostname: lkrun-check')
}

# The guest tool against the small kernel's vsock loopback transport (CID 1): the same code paths a host peer uses.
make_vsock_iso() {
    local dir=$work/vsock
    mkdir -p "$dir"
    cat > "$dir/user-data" <<'EOF'
#!/bin/sh
t=lkrun-guest-tool
$t local-cid > /dev/null 2>&1; echo "vsock-check local-cid-exit $?"
$t vsock-echo 6000 & $t vsock-discard 6001 & $t vsock-source 6002 &
sleep 1
echo "vsock-check connect $(echo half-closed | $t vsock-connect 1 6000)"
echo "vsock-check echo $($t vsock-send 1 6000 3000000 2>/dev/null | sha256sum | cut -c1-16)"
echo "vsock-check source $($t vsock-recv 1 6002 3000000 2>&1 | cut -d' ' -f1-3)"
echo "vsock-check discard $($t vsock-send 1 6001 3000000 2>/dev/null)"
echo "vsock-check refused $($t vsock-connect 1 6009 < /dev/null > /dev/null 2>&1; echo $?)"
EOF
    genisoimage -quiet -V CIDATA -r -J -o "$work/vsock.iso" "$dir"
}

check_guest() {
    local dir=$images/guest
    local kernel=$dir/guest-kernel initrd=$dir/guest-initrd.img cmdline
    cmdline=$(cat "$dir/guest-cmdline")

    start guest-initrd -uuid "$uuid" -kernel "$kernel" -initrd "$initrd" -append "$cmdline lkrun.poweroff"
    wait_ready guest-initrd 120 && wait_exit guest-initrd 60 &&
        expect guest-initrd "${common_markers[@]}" 'lkrun-guest: console ttyS0' 'lkrun-guest: metadata none' \
            'lkrun-guest: net none' 'lkrun-guest: vsock none' 'lkrun-guest: ready' 'lkrun-guest: powering off'

    local squashfs_size
    squashfs_size=$(($(stat -c %s "$dir/guest-squashfs.img") / 512 * 512))
    start guest-squashfs -uuid "$uuid" -kernel "$kernel" \
        -drive "file=$dir/guest-squashfs.img,if=virtio,format=raw,readonly=on" \
        -append "$cmdline root=/dev/vda lkrun.poweroff"
    wait_ready guest-squashfs 120 && wait_exit guest-squashfs 60 &&
        expect guest-squashfs "${common_markers[@]}" "lkrun-guest: disk vda $squashfs_size ro" \
            'lkrun-guest: ready' 'lkrun-guest: powering off'

    cp /usr/share/OVMF/OVMF_VARS_4M.fd "$work/OVMF_VARS_4M.fd"
    start guest-iso-efi -uuid "$uuid" \
        -drive if=pflash,format=raw,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd \
        -drive "if=pflash,format=raw,file=$work/OVMF_VARS_4M.fd" -cdrom "$dir/guest.iso"
    wait_ready guest-iso-efi 300 &&
        expect guest-iso-efi "${common_markers[@]}" "lkrun-guest: disk sr0 $(stat -c %s "$dir/guest.iso") ro" \
            'lkrun-guest: ready' &&
        power_button guest-iso-efi

    check_virtio_console guest-hvc0 "$kernel" "$initrd"

    start guest-metadata -uuid "$uuid" -kernel "$kernel" -initrd "$initrd" -cdrom "$work/metadata.iso" \
        -append "$cmdline lkrun.poweroff"
    wait_ready guest-metadata 120 && wait_exit guest-metadata 60 &&
        expect guest-metadata "${metadata_markers[@]}" 'lkrun-guest: ready' 'lkrun-guest: user-data exit 3' \
            'lkrun-guest: powering off' &&
        if grep -aq '^user-data says hello-42' "${console_log[guest-metadata]}"; then
            pass "guest-metadata: user-data ran with its output on the console"
        else
            fail "guest-metadata: no user-data output"
        fi

    check_network guest-network -kernel "$kernel" -initrd "$initrd" -append "$cmdline" -cdrom "$work/metadata.iso"

    start guest-vsock-tool -kernel "$kernel" -initrd "$initrd" -cdrom "$work/vsock.iso" -append "$cmdline lkrun.poweroff"
    wait_ready guest-vsock-tool 120 && wait_exit guest-vsock-tool 120
    local sent received
    sent=$(perl -e 'print map { chr($_ % 251) } 0 .. 2999999' | sha256sum | cut -c1-16)
    received=$(tr -d '\r' < "${console_log[guest-vsock-tool]}" | grep -a '^vsock-check ')
    local expected=("vsock-check local-cid-exit 1" "vsock-check connect half-closed" "vsock-check echo $sent"
        "vsock-check source received 3000000 bytes" "vsock-check discard 3000000" "vsock-check refused 1")
    local line
    for line in "${expected[@]}"; do
        if grep -Fxq "$line" <<< "$received"; then pass "guest-vsock-tool: $line"; else fail "guest-vsock-tool: no '$line'"; fi
    done
    echo "$received" | sed 's/^/     /'

    start guest-ignore-button -kernel "$kernel" -initrd "$initrd" -append "$cmdline lkrun.ignore_power_button"
    if wait_ready guest-ignore-button 120; then
        qmp guest-ignore-button system_powerdown
        if wait_for guest-ignore-button 'lkrun-guest: power button pressed' 5; then
            fail "guest-ignore-button: the power button was handled"
        else
            pass "guest-ignore-button: system_powerdown ignored"
        fi
        expect guest-ignore-button 'lkrun-guest: ignoring the power button' 'lkrun-guest: ready'
        type_line guest-ignore-button 'poweroff -f'
        wait_exit guest-ignore-button 60
    fi

    start guest-reboot -kernel "$kernel" -initrd "$initrd" -append "$cmdline lkrun.reboot"
    wait_ready guest-reboot 120 && wait_exit guest-reboot 60 && expect guest-reboot 'lkrun-guest: ready' 'lkrun-guest: rebooting'
}

# check_virtio_console NAME KERNEL INITRD: the same guest with console=hvc0 on a virtconsole port.
check_virtio_console() {
    local name=$1
    start "$name" -uuid "$uuid" -kernel "$2" -initrd "$3" -device virtio-serial-pci \
        -chardev "file,id=hvc,path=$logs/$name.hvc" -device virtconsole,chardev=hvc -append "console=hvc0 lkrun.poweroff"
    console_log[$name]=$logs/$name.hvc
    wait_ready "$name" 180 && wait_exit "$name" 60 &&
        expect "$name" "${common_markers[@]}" 'lkrun-guest: console hvc0' 'lkrun-guest: ready' 'lkrun-guest: powering off'
}

# check_network NAME QEMU-ARGS...: DHCP, HTTP, SSH with the injected key, UDP echo, typing on the console
# and the power button, through user-mode networking with published ports.
check_network() {
    local name=$1
    shift
    local http_port ssh_port udp_port
    http_port=$(free_port) ssh_port=$(free_port) udp_port=$(free_port)
    start "$name" -uuid "$uuid" "$@" \
        -netdev "user,id=net0,hostfwd=tcp:127.0.0.1:$http_port-:80,hostfwd=tcp:127.0.0.1:$ssh_port-:22,hostfwd=udp:127.0.0.1:$udp_port-:7" \
        -device virtio-net-pci,netdev=net0
    wait_ready "$name" 180 || return
    wait_for "$name" 'lkrun-guest: user-data exit 3' 30
    expect "$name" "lkrun-guest: disk sr0 $(stat -c %s "$work/metadata.iso") ro" "${metadata_markers[@]}" \
        'lkrun-guest: net eth0 10\.0\.2\.15/24 gw 10\.0\.2\.2 dns 10\.0\.2\.3' \
        'lkrun-guest: ready' 'lkrun-guest: user-data exit 3'
    local body
    body=$(curl -s --max-time 20 "http://127.0.0.1:$http_port/index.html")
    [ "$body" = "lkrun-guest http ok" ] && pass "$name: httpd through hostfwd" || fail "$name: httpd answered '$body'"
    local answer
    answer=$(ssh -i "$work/id_ed25519" -p "$ssh_port" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
        -o BatchMode=yes -o ConnectTimeout=30 -o LogLevel=ERROR root@127.0.0.1 echo ok 2>&1)
    [ "$answer" = ok ] && pass "$name: ssh root@guest with the injected key" || fail "$name: ssh said '$answer'"
    answer=$(echo udp-ping | socat -t 5 - "UDP:127.0.0.1:$udp_port" 2>&1)
    [ "$answer" = udp-ping ] && pass "$name: UDP echo on port 7" || fail "$name: UDP echo said '$answer'"
    type_line "$name" 'echo hello-$((6*7))'
    if wait_for "$name" 'hello-42' 30; then pass "$name: console shell ran a typed command"; else fail "$name: no hello-42"; fi
    type_line "$name" 'exit'
    sleep 2
    type_line "$name" 'echo again-$((6*7))'
    if wait_for "$name" 'again-42' 30 && [ "$(grep -ac '^lkrun-guest# ' "${console_log[$name]}")" -ge 3 ]; then
        pass "$name: the console shell came back after exit, prompt 'lkrun-guest# '"
    else
        fail "$name: no console shell after exit"
    fi
    power_button "$name"
}

[ -x "$(command -v qemu-system-x86_64)" ] || { echo "boot-check.sh: qemu-system-x86_64 missing" >&2; exit 1; }
make_metadata_iso
make_vsock_iso

if [ "$target" = guest ] || [ "$target" = all ]; then
    [ -f "$images/guest/guest.iso" ] || { echo "boot-check.sh: run tests/images/build.sh guest first" >&2; exit 1; }
    check_guest
fi
if [ "$target" = demo ] || [ "$target" = all ]; then
    [ -f "$images/demo/demo-initrd.img" ] || { echo "boot-check.sh: run tests/images/build.sh demo first" >&2; exit 1; }
    demo=$images/demo
    start demo-initrd -uuid "$uuid" -kernel "$demo/demo-kernel" -initrd "$demo/demo-initrd.img" \
        -append "$(cat "$demo/demo-cmdline") lkrun.poweroff"
    wait_ready demo-initrd 180 && wait_exit demo-initrd 60 &&
        expect demo-initrd "${common_markers[@]}" 'lkrun-guest: console ttyS0' 'lkrun-guest: metadata none' \
            'lkrun-guest: net none' 'lkrun-guest: vsock none' 'lkrun-guest: ready' 'lkrun-guest: powering off'
    check_virtio_console demo-hvc0 "$demo/demo-kernel" "$demo/demo-initrd.img"
    # Debian's cloud kernel has no AHCI driver, so q35's -cdrom is invisible to it: the CD goes on virtio-scsi.
    check_network demo-network -kernel "$demo/demo-kernel" -initrd "$demo/demo-initrd.img" \
        -append "$(cat "$demo/demo-cmdline")" -device virtio-scsi-pci -device scsi-cd,drive=cidata \
        -drive "if=none,id=cidata,file=$work/metadata.iso,format=raw,media=cdrom,readonly=on"
fi

echo "time from QEMU start to 'lkrun-guest: ready' (TCG):"
printf '  %s\n' "${timings[@]}"
echo "boot-check: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
