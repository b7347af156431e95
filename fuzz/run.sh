#!/usr/bin/env bash
# fuzz/run.sh TARGET SECONDS: runs one AFL++ instance on TARGET for SECONDS, starting from fuzz/corpus/TARGET
# (written from the target's seeds when empty). Findings go to out/fuzz/findings/TARGET; the summary line gives
# executions, paths, crashes and hangs. FUZZ_NO_BUILD=1 reuses the last build.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
target=${1:?usage: fuzz/run.sh TARGET SECONDS}
seconds=${2:?usage: fuzz/run.sh TARGET SECONDS}
fuzzer="$root/out/fuzz/bin/Lkrun.Fuzz"
if [[ "${FUZZ_NO_BUILD:-}" != 1 || ! -x "$fuzzer" ]]; then
    "$root/fuzz/build.sh" >/dev/null
fi
"$fuzzer" --list | grep -qx "$target" || { echo "fuzz/run.sh: no target '$target' (fuzz targets: $("$fuzzer" --list | tr '\n' ' '))" >&2; exit 2; }
corpus="$root/fuzz/corpus/$target"
if [[ -z "$(ls -A "$corpus" 2>/dev/null)" ]]; then
    seeds=$(mktemp -d)
    "$fuzzer" --seeds "$seeds"
    mkdir -p "$corpus"
    cp "$seeds/$target"/* "$corpus"/
    rm -rf "$seeds"
fi
findings="$root/out/fuzz/findings/$target"
rm -rf "$findings"
mkdir -p "$findings"
# SharpFuzz's fork server runs the target in persistent mode in the one .NET process; its map is AFL's classic 64 KiB.
AFL_SKIP_BIN_CHECK=1 AFL_NO_UI=1 AFL_MAP_SIZE=65536 AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 \
    afl-fuzz -i "$corpus" -o "$findings" -t 5000 -V "$seconds" -- "$fuzzer" "$target" >"$findings/afl.log" 2>&1 || {
        echo "fuzz/run.sh: afl-fuzz failed on $target; see $findings/afl.log" >&2
        tail -20 "$findings/afl.log" >&2
        exit 1
    }
rm -rf "${TMPDIR:-/tmp}"/lkrun-fuzz-leases-*
stats="$findings/default/fuzzer_stats"
value() { awk -v key="$1" '$1 == key { print $3 }' "$stats"; }
echo "$target: $(value execs_done) executions in $(value run_time) s, $(value corpus_count) paths ($(value corpus_found) found), $(value saved_crashes) crashes, $(value saved_hangs) hangs"
