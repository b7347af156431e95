#!/usr/bin/env bash
# Metadata ISO creation: `lkrun metadata create` against xorriso making an equivalent image (volume CIDATA, Rock
# Ridge and Joliet, files config, user-data and meta-data), for 64 MiB of random user data. The commands run
# alternately in the same run; each figure is the median wall time of RUNS runs, including process start.
#
# xorriso is measured twice: with config and user-data hard-linked in its source directory, which makes it store the
# data once as lkrun does (the equivalent image), and with two separate copies, which doubles what it writes.
#
# Usage: bench/metadata-iso.sh [RUNS]   (default 9; results also go to bench/results/metadata-iso.txt)
set -euo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
runs=${1:-9}
results="$repo/bench/results/metadata-iso.txt"
size_mib=64

"$repo/lkrun" --help >/dev/null
command -v xorriso >/dev/null || { echo "xorriso is not installed (apt-get install xorriso)" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/lkrun-bench-metadata.XXXXXX")
trap 'rm -rf "$work"' EXIT

head -c $((size_mib << 20)) /dev/urandom >"$work/data.bin"
mkdir "$work/linked" "$work/copied" "$work/empty"
printf 'instance-id: %s\n' "$(cat /proc/sys/kernel/random/uuid)" | tee "$work/linked/meta-data" "$work/copied/meta-data" "$work/empty/meta-data" >/dev/null
cp "$work/data.bin" "$work/linked/user-data"
ln "$work/linked/user-data" "$work/linked/config"
cp "$work/data.bin" "$work/copied/user-data"
cp "$work/data.bin" "$work/copied/config"
: >"$work/empty/user-data"
: >"$work/empty/config"

run_lkrun() { "$lkrun_binary" metadata create "$work/out.iso" -data-file "$1"; }
run_xorriso() { xorriso -as mkisofs -quiet -V CIDATA -J -R -o "$work/out.iso" "$1" 2>/dev/null; }

declare -A times sizes
cases=(lkrun xorriso-linked xorriso-copied lkrun-empty xorriso-empty)
measure() {
    local name=$1; shift
    rm -f "$work/out.iso"
    local start end
    start=$(date +%s%N)
    "$@"
    end=$(date +%s%N)
    times[$name]+="$(( (end - start) / 1000 )) "
    sizes[$name]=$(stat -c %s "$work/out.iso")
}

# Warm the page cache and both programs once, then alternate.
run_lkrun "$work/data.bin"
run_xorriso "$work/linked"
for _ in $(seq "$runs"); do
    measure lkrun run_lkrun "$work/data.bin"
    measure xorriso-linked run_xorriso "$work/linked"
    measure xorriso-copied run_xorriso "$work/copied"
    measure lkrun-empty run_lkrun /dev/null
    measure xorriso-empty run_xorriso "$work/empty"
done

# The image lkrun wrote last must hold the data, byte for byte, under both names.
run_lkrun "$work/data.bin"
for file in config user-data; do
    cmp -s <(isoinfo -i "$work/out.iso" -R -x "/$file") "$work/data.bin" || { echo "lkrun image: /$file differs" >&2; exit 1; }
done

# shellcheck disable=SC2086
median_us() { median ${times[$1]}; }

{
    echo "# Metadata ISO creation, ${size_mib} MiB of random user data, median of $runs alternating runs"
    echo "# $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) CPUs, $(xorriso -version 2>/dev/null | head -1 | cut -d: -f1), lkrun $(git -C "$repo" rev-parse --short HEAD)"
    printf '%-16s %12s %12s %14s\n' case median_ms MiB/s image_bytes
    for name in "${cases[@]}"; do
        us=$(median_us "$name")
        if [[ $name == *empty ]]; then rate=-; else rate=$(awk -v us="$us" -v mib="$size_mib" 'BEGIN { printf "%.0f", mib / (us / 1e6) }'); fi
        printf '%-16s %12.1f %12s %14s\n' "$name" "$(awk -v us="$us" 'BEGIN { print us / 1000 }')" "$rate" "${sizes[$name]}"
    done
    lk=$(median_us lkrun)
    echo "ratio xorriso-linked/lkrun: $(awk -v a="$(median_us xorriso-linked)" -v b="$lk" 'BEGIN { printf "%.2f", a / b }') (above 1: lkrun is faster)"
    echo "ratio xorriso-copied/lkrun: $(awk -v a="$(median_us xorriso-copied)" -v b="$lk" 'BEGIN { printf "%.2f", a / b }')"
} | tee "$results"
