#!/usr/bin/env bash
# Builds the small test-guest kernel (everything built in, no modules) from Debian's linux-source-6.1,
# cached by the hash of the config fragment and the source package version.
# Usage: build-kernel.sh OUTDIR   -> OUTDIR/bzImage
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:?usage: build-kernel.sh OUTDIR}
source_tar=/usr/src/linux-source-6.1.tar.xz
[ -f "$source_tar" ] || { echo "build-kernel.sh: $source_tar missing (apt-get install linux-source-6.1)" >&2; exit 1; }

# Content only (no path in the hash), so every checkout of the same sources shares the key.
key=$( (sha256sum < "$here/guest-kernel.config"; dpkg-query -W -f='${Version}' linux-source-6.1) | sha256sum | cut -c1-16)
mkdir -p "$out"
if [ -f "$out/bzImage" ] && [ "$(cat "$out/bzImage.key" 2>/dev/null)" = "$key" ]; then
  exit 0
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/lkrun-kernel.XXXXXX")
trap 'rm -rf "$work"' EXIT
echo "build-kernel.sh: building the test-guest kernel (about 12 minutes on 2 cores, cached afterwards)" >&2
tar -C "$work" -xJf "$source_tar"
src="$work/linux-source-6.1"
make -C "$src" -s tinyconfig
(cd "$src" && scripts/kconfig/merge_config.sh -m .config "$here/guest-kernel.config" >/dev/null)
make -C "$src" -s olddefconfig
# merge_config.sh only warns about an option whose dependencies are unmet; a guest without it fails much later.
dropped=$(grep '^CONFIG_.*=y$' "$here/guest-kernel.config" | while read -r option; do
    grep -qx "$option" "$src/.config" || printf '%s ' "$option"
done)
[ -z "$dropped" ] || { echo "build-kernel.sh: options not in the final config (missing dependencies?): $dropped" >&2; exit 1; }
make -C "$src" -s -j"$(nproc)" bzImage
cp "$src/arch/x86/boot/bzImage" "$out/bzImage.tmp"
mv "$out/bzImage.tmp" "$out/bzImage"
echo "$key" > "$out/bzImage.key"
