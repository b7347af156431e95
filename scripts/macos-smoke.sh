#!/usr/bin/env bash
# Smoke test of the virtualization.framework backend, for a Mac (macOS 12 or newer): builds and signs lkrun
# (./lkrun), boots a small kernel+initrd on Virtualization.framework, and checks the console, a vsock echo through
# STATE/guest.PPPPPPPP, a published port, and that SIGTERM ends lkrun with 0. Prints PASS or FAIL per check and
# exits 1 when any failed.
#
# Usage: scripts/macos-smoke.sh [PREFIX]
# PREFIX is a LinuxKit-layout image that keeps the guest contract of tests/images/README.md (the "lkrun-guest:
# ready" line, httpd on TCP 80, a vsock echo on port 5000, acpid for the power button). The default,
# out/images/guest/guest, is the x86_64 test image that tests/images/build.sh makes on Debian: copy out/images from
# a Linux machine to run it on an Intel Mac. Apple silicon needs an arm64 image with an uncompressed kernel.
set -uo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
prefix=${1:-$root/out/images/guest/guest}
vsock_port=5000
http_port=${LKRUN_SMOKE_HTTP_PORT:-18080}
ready_timeout=180

if [ "$(uname -s)" != Darwin ]; then
    echo "macos-smoke: this test runs on macOS only" >&2
    exit 2
fi
if [ ! -f "$prefix-kernel" ] || [ ! -f "$prefix-initrd.img" ]; then
    echo "macos-smoke: no image at $prefix (need $prefix-kernel and $prefix-initrd.img)" >&2
    exit 2
fi

failures=0
report() { # NAME OK DETAIL
    if [ "$2" = 0 ]; then
        echo "PASS $1"
    else
        echo "FAIL $1${3:+: $3}"
        failures=$((failures + 1))
    fi
}

work=$(mktemp -d "${TMPDIR:-/tmp}/lkrun-smoke.XXXXXX")
state=$work/state
console=$work/console.log
pid=
cleanup() {
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill -KILL "$pid" 2>/dev/null
    fi
    rm -rf "$work"
}
trap cleanup EXIT

# 1. Build and sign.
if "$root/lkrun" --help >/dev/null; then
    report build 0
else
    report build 1 "./lkrun did not build"
    exit 1
fi
codesign -d --entitlements - "$root/out/cli/lkrun" 2>&1 | grep -q com.apple.security.virtualization
report "signed with com.apple.security.virtualization" $? "codesign -d --entitlements - out/cli/lkrun shows no such entitlement"

# 2. Boot, with the console on a file (stdin is not a terminal, so the output streams).
"$root/out/cli/lkrun" run vz -state "$state" -mem 512 -vsock-ports "$vsock_port" -publish "$http_port:80" \
    --stop-timeout 30 "$prefix" </dev/null >"$console" 2>"$work/lkrun.err" &
pid=$!
waited=0
until grep -q "lkrun-guest: ready" "$console" 2>/dev/null; do
    if ! kill -0 "$pid" 2>/dev/null || [ "$waited" -ge "$ready_timeout" ]; then
        break
    fi
    sleep 1
    waited=$((waited + 1))
done
grep -q "lkrun-guest: ready" "$console"
report "console shows the guest ready (${waited} s)" $? "$(tail -n 3 "$work/lkrun.err" "$console" | tr '\n' ' ')"
grep -q "lkrun-guest: console.*hvc0" "$console"
report "the guest's console is hvc0" $?

# 3. A vsock echo through STATE/guest.PPPPPPPP (perl ships with macOS): send, half-close, read the echo.
socket=$(printf '%s/guest.%08x' "$state" "$vsock_port")
echo=$(perl -MIO::Socket::UNIX -e '
    my $s = IO::Socket::UNIX->new(Type => SOCK_STREAM(), Peer => $ARGV[0]) or die "connect: $!\n";
    print $s "hello over vsock\n"; $s->shutdown(1);
    local $/; my $reply = <$s>; print $reply // "";' "$socket" 2>&1)
[ "$echo" = "hello over vsock" ]
report "vsock echo through $(basename "$socket")" $? "got '$echo'"

# 4. A published port reaches the guest's httpd.
page=$(curl -s --max-time 10 "http://127.0.0.1:$http_port/" 2>&1)
[ "$page" = "lkrun-guest http ok" ]
report "published port $http_port -> guest 80" $? "got '$page'"

# 5. SIGTERM presses the power button; the guest powers off and lkrun exits 0.
if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid"
    wait "$pid"
    status=$?
    pid=
    [ "$status" = 0 ]
    report "SIGTERM -> exit 0" $? "exit status $status; $(tail -n 2 "$work/lkrun.err" | tr '\n' ' ')"
else
    report "SIGTERM -> exit 0" 1 "lkrun had already exited: $(tail -n 2 "$work/lkrun.err" | tr '\n' ' ')"
fi

echo "macos-smoke: $failures failed"
[ "$failures" = 0 ]
