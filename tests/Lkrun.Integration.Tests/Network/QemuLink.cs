using Lkrun.Integration.Tests.Infrastructure;

namespace Lkrun.Integration.Tests.Network;

/// <summary>Picks QEMU's network link for an lkrun (<c>LKRUN_QEMU_NET_LINK</c>) and checks that QEMU got it.</summary>
internal static class QemuLink
{
    public static Dictionary<string, string> Environment(string link) => new() { ["LKRUN_QEMU_NET_LINK"] = link };

    /// <summary>
    /// The running QEMU's <c>-netdev</c> is the one the link asks for, and the datagram link's second socket (QEMU's
    /// own) is in the state dir.
    /// </summary>
    public static async Task AssertInUseAsync(LkrunProcess lkrun, string link)
    {
        var args = File.ReadAllText($"/proc/{await lkrun.QemuPidAsync()}/cmdline").Split('\0');
        var netdev = args[Array.IndexOf(args, "-netdev") + 1];
        Assert.StartsWith(link == "datagram" ? "dgram," : "stream,", netdev);
        Assert.Equal(link == "datagram", File.Exists(Path.Combine(lkrun.StateDirectory, "net-device.sock")));
    }
}
