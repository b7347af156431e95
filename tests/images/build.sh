#!/usr/bin/env bash
# Builds lkrun's test-guest images in LinuxKit's output layout from Debian packages only, without root:
#   out/images/guest/guest-{kernel,initrd.img,cmdline,squashfs.img}, guest.iso   (small kernel from build-kernel.sh)
#   out/images/demo/demo-{kernel,initrd.img,cmdline}                          (Debian's cloud kernel + its modules)
# Each output directory carries a .key (hash of the sources and tool versions that went in); a matching key
# means the directory is up to date and is left alone.
# Usage: build.sh [demo|guest|all]     (packages: tests/images/packages.txt, and guest-packages.txt for the guest)
set -euo pipefail
export LC_ALL=C
# depmod lives in /usr/sbin, which a non-root PATH may lack.
export PATH=$PATH:/usr/sbin:/sbin

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
out=$repo/out/images
target=${1:-all}
case $target in
    demo | guest | all) ;;
    *) echo "usage: build.sh [demo|guest|all]" >&2; exit 2 ;;
esac

log() { echo "build.sh: $*" >&2; }
fail() { log "$*"; exit 1; }

# shellcheck source=../../scripts/prerequisites.sh
. "$repo/scripts/prerequisites.sh"
# shellcheck disable=SC2046
missing=$(missing_packages $(image_packages "$target") | tr '\n' ' ')
[ -z "$missing" ] || fail "missing Debian packages: $missing(scripts/prerequisites.sh's image_packages $target lists them all)"

hash16() { sha256sum | cut -c1-16; }

# Everything under tests/images that goes into an image, by content and mode, plus the packages' versions.
sources_key() {
    (
        cd "$here"
        find build.sh packages.txt rootfs guest-tool -type f -o -type l | sort | while read -r file; do
            printf '%s %s ' "$file" "$(stat -c %a "$file")"
            sha256sum < "$file"
        done
        xargs dpkg-query -W -f='${Package} ${Version}\n' < packages.txt
    ) | hash16
}

is_current() { [ "$(cat "$1/.key" 2>/dev/null)" = "$2" ]; }

work=$(mktemp -d "${TMPDIR:-/tmp}/lkrun-images.XXXXXX")
trap 'rm -rf "$work"' EXIT

# Copies an ELF binary and the shared libraries ldd names for it (with the loader) into a root tree.
install_dynamic() {
    local binary=$1 root=$2 destination=$3 library
    install -D -m 755 "$binary" "$root/$destination"
    for library in $(ldd "$binary" | grep -o '/[^ ]*'); do
        install -D -m 755 "$library" "$root$library"
    done
}

# The root filesystem shared by every image: busybox with all its applet links, the /init, dropbear,
# the guest tools (every guest-tool/*.c as /bin/NAME), and the files of tests/images/rootfs.
build_rootfs() {
    local root=$1 applet
    mkdir -p "$root"
    cp -a "$here/rootfs/." "$root/"
    mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,proc,sys,dev,tmp,run,var/log,var/run,etc/dropbear}
    mkdir -m 700 "$root/root"
    install -m 755 /bin/busybox "$root/bin/busybox"
    for applet in $(busybox --list-full); do
        # The kernel starts /sbin/init on a disk root: that must be the same /init, not busybox's init.
        case $applet in sbin/init | bin/busybox) continue ;; esac
        mkdir -p "$root/$(dirname "$applet")"
        ln -sf /bin/busybox "$root/$applet"
    done
    ln -s /init "$root/sbin/init"
    ln -s /run/resolv.conf "$root/etc/resolv.conf"
    local tool
    for tool in "$here"/guest-tool/*.c; do
        gcc -static -O2 -Wall -Wextra -Werror -o "$root/bin/$(basename "$tool" .c)" "$tool"
    done
    install_dynamic /usr/sbin/dropbear "$root" usr/sbin/dropbear
    dropbearkey -t ed25519 -f "$root/etc/dropbear/dropbear_ed25519_host_key" > /dev/null 2>&1
}

# newc cpio, every file owned by root whoever builds it, gzip-compressed.
make_initrd() {
    local root=$1 initrd=$2
    (cd "$root" && find . -mindepth 1 | sort | cpio -o -H newc --owner=0:0 --reproducible --quiet) |
        gzip -9n > "$initrd"
}

rootfs_key=$( (sources_key; for file in /bin/busybox /usr/sbin/dropbear $(ldd /usr/sbin/dropbear | grep -o '/[^ ]*'); do
    sha256sum < "$file"; done) | hash16)
# The tree sits one level below its .key so the key never ends up inside an image.
rootfs=$out/rootfs/tree
if ! is_current "$out/rootfs" "$rootfs_key"; then
    log "building the root filesystem"
    rm -rf "$out/rootfs"
    build_rootfs "$work/rootfs"
    mkdir -p "$out/rootfs"
    mv "$work/rootfs" "$rootfs"
    echo "$rootfs_key" > "$out/rootfs/.key"
fi

# Replaces an output directory in one step once all its files are written.
publish() {
    local staged=$1 destination=$2 key=$3
    echo "$key" > "$staged/.key"
    rm -rf "$destination"
    mv "$staged" "$destination"
}

build_guest() {
    "$here/build-kernel.sh" "$out/kernel"
    local kernel=$out/kernel/bzImage
    local key
    key=$( (echo "$rootfs_key"; cat "$out/kernel/bzImage.key"; sha256sum < "$here/guest-packages.txt"
        xargs dpkg-query -W -f='${Package} ${Version}\n' < "$here/guest-packages.txt") | hash16)
    is_current "$out/guest" "$key" && return
    log "building the guest image (initrd, squashfs, EFI ISO)"
    local staged=$work/guest
    mkdir -p "$staged"
    cp "$kernel" "$staged/guest-kernel"
    echo "console=ttyS0" > "$staged/guest-cmdline"
    make_initrd "$rootfs" "$staged/guest-initrd.img"
    mksquashfs "$rootfs" "$staged/guest-squashfs.img" -all-root -comp xz -noappend -no-progress -quiet > /dev/null
    local iso=$work/iso
    mkdir -p "$iso/boot/grub"
    cp "$kernel" "$iso/boot/kernel"
    cp "$staged/guest-initrd.img" "$iso/boot/initrd.img"
    cat > "$iso/boot/grub/grub.cfg" <<'EOF'
set timeout=0
set default=0
menuentry "lkrun test guest" {
    linux /boot/kernel console=ttyS0
    initrd /boot/initrd.img
}
EOF
    # grub-efi-amd64-bin and grub-pc-bin are both installed, so the ISO boots through EFI and through the BIOS.
    grub-mkrescue -o "$staged/guest.iso" "$iso" > "$work/grub-mkrescue.log" 2>&1 ||
        { cat "$work/grub-mkrescue.log" >&2; fail "grub-mkrescue failed"; }
    publish "$staged" "$out/guest" "$key"
}

# Debian's cloud kernel, fetched as a package and unpacked (never installed), with the modules the
# guest needs resolved through modules.dep.
demo_modules=(virtio_pci virtio_console virtio_blk virtio_net virtio_scsi vsock vmw_vsock_virtio_transport
    isofs squashfs button evdev ata_piix sr_mod cdrom sd_mod)
# Synchronous SCSI scanning, so /dev/sr0 exists by the time /init lists the disks.
declare -A module_parameters=([scsi_mod]="scan=sync")

# Writes the load order (dependencies first) of the wanted modules, copying each into the root tree.
resolve_modules() {
    local unpacked=$1 release=$2 root=$3 name path dependency parameters
    local modules=$unpacked/lib/modules/$release
    declare -A seen=()
    depmod -b "$unpacked" "$release"
    mkdir -p "$root/lib/modules/$release"
    for name in "${demo_modules[@]}"; do
        path=$(awk -F: -v name="$name" '{ file = $1; sub(/.*\//, "", file); sub(/\.ko(\.[a-z]+)?$/, "", file);
            gsub(/-/, "_", file); if (file == name) { print $1; exit } }' "$modules/modules.dep")
        if [ -z "$path" ]; then
            if grep -Eq "/${name//_/[-_]}\.ko$" "$modules/modules.builtin"; then
                continue
            fi
            fail "module $name not found in $release"
        fi
        # depmod lists a module's dependencies so that loading them in reverse order is valid.
        for dependency in $(awk -F': *' -v path="$path" '$1 == path { print $2 }' "$modules/modules.dep" |
            tr ' ' '\n' | tac) "$path"; do
            [ -n "${seen[$dependency]:-}" ] && continue
            seen[$dependency]=1
            install -D -m 644 "$modules/$dependency" "$root/lib/modules/$release/$dependency"
            name=$(basename "$dependency" .ko)
            parameters=${module_parameters[${name//-/_}]:-}
            echo "$dependency${parameters:+ $parameters}"
        done
    done > "$root/lib/modules/$release/boot-modules.tmp"
    mv "$root/lib/modules/$release/boot-modules.tmp" "$root/lib/modules/$release/boot-modules"
}

build_demo() {
    # The metapackage pins the versioned kernel package: "Depends: linux-image-<abi>-cloud-amd64 (= <version>)".
    local depends package version
    depends=$(apt-cache show --no-all-versions linux-image-cloud-amd64 2>/dev/null |
        awk '/^Depends: linux-image-/ && !found { print; found = 1 }')
    [ -n "$depends" ] || fail "apt knows no linux-image-cloud-amd64: run apt-get update first"
    package=$(awk '{ print $2 }' <<< "$depends")
    version=$(sed -n 's/.*(= \(.*\)).*/\1/p' <<< "$depends")
    [ -n "$package" ] && [ -n "$version" ] || fail "unexpected dependency of linux-image-cloud-amd64: $depends"
    local key
    key=$( (echo "$rootfs_key"; echo "$package $version") | hash16)
    is_current "$out/demo" "$key" && return
    log "building the demo image from $package $version"
    local downloads=$out/downloads
    mkdir -p "$downloads"
    local deb
    deb=$(ls "$downloads/${package}_${version//:/%3a}_"*.deb 2>/dev/null | head -1 || true)
    if [ -z "$deb" ]; then
        # As root apt would hand the download to its _apt user, who cannot write here.
        local sandbox=()
        [ "$(id -u)" = 0 ] && sandbox=(-o APT::Sandbox::User=root)
        (cd "$downloads" && apt-get download -q "${sandbox[@]}" "$package=$version" >&2)
        deb=$(ls "$downloads/${package}_${version//:/%3a}_"*.deb | head -1)
    fi
    local unpacked=$work/kernel-package
    dpkg-deb -x "$deb" "$unpacked"
    local release
    release=$(ls "$unpacked/lib/modules")
    local staged=$work/demo root=$work/demo-root
    mkdir -p "$staged"
    cp "$unpacked/boot/vmlinuz-$release" "$staged/demo-kernel"
    echo "console=ttyS0" > "$staged/demo-cmdline"
    cp -a "$rootfs" "$root"
    resolve_modules "$unpacked" "$release" "$root"
    make_initrd "$root" "$staged/demo-initrd.img"
    publish "$staged" "$out/demo" "$key"
}

case $target in
    guest) build_guest ;;
    demo) build_demo ;;
    all) build_guest; build_demo ;;
esac
log "images are in $out"
