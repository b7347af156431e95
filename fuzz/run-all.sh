#!/usr/bin/env bash
# fuzz/run-all.sh SECONDS: every target in turn for SECONDS each, one AFL++ instance at a time.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
seconds=${1:?usage: fuzz/run-all.sh SECONDS}
"$root/fuzz/build.sh" >/dev/null
for target in $("$root/out/fuzz/bin/Lkrun.Fuzz" --list); do
    FUZZ_NO_BUILD=1 "$root/fuzz/run.sh" "$target" "$seconds"
done
