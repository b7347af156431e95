#!/usr/bin/env bash
# fuzz/minimise.sh TARGET: replaces fuzz/corpus/TARGET with the smallest set (afl-cmin) of the corpus, the last run's
# queue and its crashes and hangs (once fixed, those are regression inputs) that keeps every path AFL++ saw.
# Inputs that still crash are left out by afl-cmin: fix them first.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
target=${1:?usage: fuzz/minimise.sh TARGET}
fuzzer="$root/out/fuzz/bin/Lkrun.Fuzz"
findings="$root/out/fuzz/findings/$target/default"
corpus="$root/fuzz/corpus/$target"
mkdir -p "$root/out/fuzz/tmp"
# afl-cmin refuses to work in /tmp.
all=$(mktemp -d -p "$root/out/fuzz/tmp")
minimal=$(mktemp -d -p "$root/out/fuzz/tmp")
trap 'rm -rf "$all" "$minimal"' EXIT
for folder in "$corpus" "$findings/queue" "$findings/crashes" "$findings/hangs"; do
    [[ -d "$folder" ]] && find "$folder" -maxdepth 1 -type f ! -name 'README.txt' -exec cp {} "$all/" \;
done
# afl-cmin names its output after the inputs; short content hashes keep the committed names stable and small.
AFL_SKIP_BIN_CHECK=1 AFL_MAP_SIZE=65536 afl-cmin -i "$all" -o "$minimal/out" -t 5000 -- "$fuzzer" "$target" >"$minimal/cmin.log" 2>&1 || {
    tail -20 "$minimal/cmin.log" >&2
    exit 1
}
rm -rf "$corpus"
mkdir -p "$corpus"
for file in "$minimal/out"/*; do
    cp "$file" "$corpus/$(sha1sum "$file" | cut -c1-16)"
done
echo "$target: $(find "$all" -type f | wc -l) inputs minimised to $(find "$corpus" -type f | wc -l) ($(cat "$corpus"/* | wc -c) bytes)"
