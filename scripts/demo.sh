#!/usr/bin/env bash
# Builds lkrun and the demo image (Debian's cloud kernel with a busybox userland, in LinuxKit's layout), then
# boots it with the console on this terminal. Extra arguments go to `lkrun run` (for example -mem 2048).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=prerequisites.sh
. "$root/scripts/prerequisites.sh"
ensure_dotnet
# shellcheck disable=SC2046,SC2086
ensure_packages $LKRUN_RUN_PACKAGES $(image_packages demo)
ensure_package_lists
"$root/tests/images/build.sh" demo
"$root/lkrun" --help >/dev/null
echo "lkrun: booting the demo image; its shell is on this terminal. Type 'poweroff' in it to shut it down (Ctrl-A x stops it at once, Ctrl-A h lists the keys)." >&2
exec "$root/lkrun" run "$@" "$root/out/images/demo/demo"
