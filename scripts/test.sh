#!/usr/bin/env bash
# Runs every lkrun test: installs what is missing, builds the test guests (cached) and the CLI, then runs the unit
# tests and the integration tests that boot real guests under QEMU. Extra arguments go to `dotnet test`.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
# shellcheck source=prerequisites.sh
. "$root/scripts/prerequisites.sh"
ensure_dotnet
# shellcheck disable=SC2046,SC2086
ensure_packages $LKRUN_RUN_PACKAGES $LKRUN_TEST_PACKAGES $(image_packages)
ensure_package_lists
"$root/tests/images/build.sh" all
"$root/lkrun" --help >/dev/null
# The Virtualization.framework engine is plain net10.0; check that lkrun builds for both kinds of Mac.
for rid in osx-arm64 osx-x64; do
    dotnet build "$root/src/Lkrun/Lkrun.csproj" --nologo -v quiet -r "$rid"
done
dotnet test --solution lkrun.slnx "$@"
