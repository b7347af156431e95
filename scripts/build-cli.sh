#!/usr/bin/env bash
# Builds lkrun as a Native AOT binary into out/cli/lkrun (it starts in milliseconds, so QEMU does too).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
case "$(uname -s)-$(uname -m)" in
    Linux-x86_64) rid=linux-x64 ;;
    Linux-aarch64) rid=linux-arm64 ;;
    Darwin-arm64) rid=osx-arm64 ;;
    Darwin-x86_64) rid=osx-x64 ;;
    *) echo "lkrun: no build for $(uname -s) $(uname -m)" >&2; exit 1 ;;
esac
echo "lkrun: building the CLI into out/cli (sources changed since the last build)" >&2
staging="$root/out/cli.partial"
rm -rf "$staging"
dotnet publish "$root/src/Lkrun/Lkrun.csproj" --nologo -v quiet -c Release -r "$rid" -p:PublishAot=true -o "$staging" >&2
if [ "$(uname -s)" = Darwin ]; then
    # Virtualization.framework refuses a process without this entitlement; an ad-hoc signature carries it.
    codesign --force --sign - --entitlements "$root/scripts/lkrun.entitlements" "$staging/lkrun" >&2
fi
rm -rf "$root/out/cli"
mv "$staging" "$root/out/cli"
