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
dotnet test --solution lkrun.slnx "$@"
