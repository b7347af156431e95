using Lkrun.Integration.Tests.Infrastructure;

namespace Lkrun.Integration.Tests.Network;

/// <summary>
/// The guest cannot reach link-local addresses (169.254.0.0/16, where cloud providers serve the host's instance
/// metadata and credentials) through the NAT. lkrun runs in a network namespace of the test's own, so nothing can
/// leave the machine even if the block fails; there 169.254.169.254 and 127.0.0.1 each serve a page, so a guest that
/// got through would read it. strace records every address lkrun connects or sends to.
/// </summary>
public sealed class LinkLocalTests : IDisposable
{
    private const int LoopbackPort = 18081;

    private readonly Scratch _scratch = new();

    public void Dispose() => _scratch.Dispose();

    [Fact]
    public async Task The_guest_is_answered_by_lkrun_for_link_local_addresses_and_lkrun_never_connects_there()
    {
        Directory.CreateDirectory(_scratch["www"]);
        File.WriteAllText(_scratch["www/page"], "served in the namespace\n");
        const string guestScript = """
            #!/bin/sh
            echo "metadata tcp: $(wget -q -O - http://169.254.169.254/page 2>&1)"
            echo "metadata udp: $(echo probe | nc -u -w 3 169.254.169.254 53 2>&1; echo exit $?)"
            ping -c 1 -w 5 169.254.169.254 >/dev/null 2>&1; echo "metadata ping exit $?"
            echo "loopback tcp: $(wget -q -O - http://192.168.65.1:18081/page 2>&1)"
            """;
        var trace = _scratch["connect.trace"];
        string[] lkrunArgs = ["run", "-state", _scratch["state"], "-mem", "256", "-data", guestScript.Replace("\r", ""), TestImages.Guest];
        // As root, unshare -n; the namespace's loopback gets the link-local address too.
        var shell = $"""
            set -e
            ip link set lo up
            ip addr add 169.254.169.254/32 dev lo
            python3 -m http.server --bind 169.254.169.254 --directory {_scratch["www"]} 80 >/dev/null 2>&1 &
            python3 -m http.server --bind 127.0.0.1 --directory {_scratch["www"]} {LoopbackPort} >/dev/null 2>&1 &
            trap 'kill $(jobs -p) 2>/dev/null' EXIT
            set +e
            strace -f --seccomp-bpf -qq -e trace=connect,sendto,sendmsg -o {trace} {LkrunProcess.LkrunCommand(lkrunArgs)}
            """;
        await using var lkrun = LkrunProcess.StartInShell($"exec unshare -n bash -c {Quote(shell)}", _scratch["state"]);
        await lkrun.WaitForOutputAsync("lkrun-guest: user-data exit 0");
        Assert.Contains("loopback tcp: served in the namespace", lkrun.Output);
        Assert.Matches("metadata tcp: wget: can't connect to remote host \\(169.254.169.254\\): Connection refused", lkrun.Output);
        Assert.DoesNotContain("served in the namespace", lkrun.Output.Split("metadata tcp:")[1].Split('\n')[0]);
        Assert.Contains("metadata ping exit 1", lkrun.Output);
        await lkrun.SignalAsync(Posix.SIGTERM);
        Assert.Equal(0, await lkrun.WaitForExitAsync());

        var calls = File.ReadAllText(trace);
        // strace saw lkrun's connection to the namespace's loopback for the guest; it would have seen any other.
        Assert.Matches($"connect\\(\\d+, \\{{sa_family=AF_INET, sin_port=htons\\({LoopbackPort}\\), sin_addr=inet_addr\\(\"127.0.0.1\"\\)", calls);
        Assert.DoesNotContain("169.254.", calls);
    }

    private static string Quote(string text) => "'" + text.Replace("'", "'\\''", StringComparison.Ordinal) + "'";
}
