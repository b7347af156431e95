# Sourced by lkrun's scripts: installs what they need on Debian/Ubuntu, and says what is missing elsewhere.
# shellcheck shell=bash

# Packages lkrun itself needs at run time, and to build its Native AOT binary (qemu-system-common: virtiofsd).
LKRUN_RUN_PACKAGES="qemu-system-x86 qemu-system-common ovmf libslirp0 gcc zlib1g-dev"
# Packages the tests use as independent readers and peers (libslirp-dev: the header the bindings are checked against).
# xz-utils, bzip2, lz4, zstd (and gzip): the compressors the kernel build uses, for the payload tests. curl: a
# client of the control API. strace and python3: the link-local test's witness and the namespaced host servers.
LKRUN_TEST_PACKAGES="genisoimage xorriso libarchive-tools openssh-client qemu-utils libslirp-dev xz-utils bzip2 lz4 zstd curl strace python3"

# missing_packages PACKAGE...: prints those of the Debian packages that are not installed, one per line.
missing_packages() {
    local package
    for package in "$@"; do
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' || echo "$package"
    done
}

# apt_update_once: refreshes apt's package lists (through sudo when not root), once per run of a script.
apt_update_once() {
    [ -n "${lkrun_apt_updated:-}" ] && return 0
    local sudo=
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null 2>&1 || { echo "lkrun: needs root or sudo to run apt-get" >&2; return 1; }
        sudo=sudo
    fi
    echo "lkrun: updating apt's package lists" >&2
    $sudo apt-get update -qq >&2
    lkrun_apt_updated=1
}

# ensure_packages PACKAGE...: installs the Debian packages that are missing (apt-get, through sudo when not root).
ensure_packages() {
    local missing=()
    if ! command -v dpkg-query >/dev/null 2>&1; then
        echo "lkrun: this is not a Debian/Ubuntu system; install the equivalents of: $*" >&2
        return 1
    fi
    mapfile -t missing < <(missing_packages "$@")
    [ ${#missing[@]} -eq 0 ] && return 0
    apt_update_once
    echo "lkrun: installing ${missing[*]}" >&2
    local sudo=
    [ "$(id -u)" -ne 0 ] && sudo=sudo
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}

# ensure_package_lists: apt's package lists, which the demo image's kernel download needs.
ensure_package_lists() {
    apt-cache show linux-image-cloud-amd64 >/dev/null 2>&1 || apt_update_once
}

# ensure_dotnet: the .NET 10 SDK, from the distribution when it packages it (Ubuntu does), else a clear message.
ensure_dotnet() {
    if command -v dotnet >/dev/null 2>&1 && dotnet --list-sdks 2>/dev/null | grep -q '^10\.'; then
        return 0
    fi
    if command -v apt-cache >/dev/null 2>&1; then
        # A fresh container has no package lists yet, which would make every package look unknown.
        apt-cache show dotnet-sdk-10.0 >/dev/null 2>&1 || apt_update_once
        if apt-cache show dotnet-sdk-10.0 >/dev/null 2>&1; then
            ensure_packages dotnet-sdk-10.0
            return 0
        fi
    fi
    echo "lkrun: needs the .NET 10 SDK (dotnet); this system does not package it: see https://learn.microsoft.com/dotnet/core/install/linux" >&2
    return 1
}

# image_packages [demo|guest|all]: what tests/images/build.sh needs for those images (all by default). Every
# image shares the root filesystem's packages; the test guest adds its kernel build and its squashfs and ISO tools.
image_packages() {
    local images
    images=$(dirname "${BASH_SOURCE[0]}")/../tests/images
    grep -v '^[[:space:]]*$' "$images/packages.txt"
    [ "${1:-all}" = demo ] || grep -v '^[[:space:]]*$' "$images/guest-packages.txt"
}
