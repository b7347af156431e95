#!/usr/bin/env bash
# Builds the fuzz targets into out/fuzz/bin and instruments lkrun's assemblies with SharpFuzz, so that AFL++ sees
# the branches of the code under test (not of the harness or the runtime). Installs AFL++ and the SharpFuzz tool
# when they are missing.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bin="$root/out/fuzz/bin"
# shellcheck source=../scripts/prerequisites.sh
. "$root/scripts/prerequisites.sh"
ensure_packages afl++
(cd "$root/fuzz" && dotnet tool restore >/dev/null)
rm -rf "$bin"
dotnet publish "$root/fuzz/Lkrun.Fuzz/Lkrun.Fuzz.csproj" --nologo -v quiet -c Release -o "$bin" >/dev/null
for assembly in Lkrun.Services.dll Lkrun.Spec.dll lkrun.dll; do
    (cd "$root/fuzz" && dotnet tool run sharpfuzz "$bin/$assembly" >/dev/null)
done
echo "$bin/Lkrun.Fuzz"
