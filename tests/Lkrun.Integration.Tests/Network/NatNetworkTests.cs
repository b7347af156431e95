using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text.RegularExpressions;
using Lkrun.Integration.Tests.Infrastructure;

namespace Lkrun.Integration.Tests.Network;

/// <summary>The whole set below over QEMU's <c>-netdev stream</c> link.</summary>
[Collection(nameof(NetworkTests))]
public sealed class NatNetworkOverStreamTests : NatNetworkTests
{
    protected override string Link => "stream";
}

/// <summary>The whole set below over QEMU's <c>-netdev dgram</c> link.</summary>
[Collection(nameof(NetworkTests))]
public sealed class NatNetworkOverDatagramTests : NatNetworkTests
{
    protected override string Link => "datagram";
}

/// <summary>
/// What lkrun's own NAT network adds to QEMU's user networking: the large MTU, and a DHCP server that never lets
/// the guest leave the address lkrun announced. The guest is driven over SSH through a published port, over the
/// link <see cref="Link"/> names (one derived class per link).
/// </summary>
public abstract class NatNetworkTests : IDisposable
{
    private const int TransferBytes = 32 << 20;

    private readonly Scratch _scratch = new();

    /// <summary>The value of <c>LKRUN_QEMU_NET_LINK</c> for every lkrun these tests start.</summary>
    protected abstract string Link { get; }

    public void Dispose() => _scratch.Dispose();

    [Fact]
    public async Task The_guest_takes_the_large_mtu_and_large_transfers_arrive_intact_in_large_segments_both_ways()
    {
        var sink = LoopbackPorts.Free();
        var source = LoopbackPorts.Free();
        await using var guest = await BootAsync("-publish", $"{sink}:5001", "-publish", $"{source}:5002");
        Assert.Equal("65520\n", await guest.RunAsync("cat /sys/class/net/eth0/mtu"));
        // The sink answers with the SHA-256 of what it read; the source sends a file of random bytes.
        await guest.RunAsync(
            "printf '#!/bin/sh\\nexec sha256sum\\n' > /tmp/sink && printf '#!/bin/sh\\nexec cat /tmp/blob\\n' > /tmp/source && " +
            "chmod +x /tmp/sink /tmp/source && " +
            "{ nc -ll -p 5001 -e /tmp/sink </dev/null >/dev/null 2>&1 & } && { nc -ll -p 5002 -e /tmp/source </dev/null >/dev/null 2>&1 & }");

        var data = new byte[TransferBytes];
        new Random(17).NextBytes(data);
        var received = await guest.CountersAsync();
        var reply = await SendAndReadReplyAsync(sink, data);
        var afterSend = await guest.CountersAsync();
        Assert.Equal(Convert.ToHexStringLower(SHA256.HashData(data)) + "  -\n", reply);
        AssertLargeSegments(afterSend.RxBytes - received.RxBytes, afterSend.RxPackets - received.RxPackets, "host to guest");

        var expected = (await guest.RunAsync($"head -c {TransferBytes} /dev/urandom > /tmp/blob && sha256sum /tmp/blob")).Split(' ')[0];
        var before = await guest.CountersAsync();
        var fetched = await ReadAllAsync(source);
        var after = await guest.CountersAsync();
        Assert.Equal(TransferBytes, fetched.Length);
        Assert.Equal(expected, Convert.ToHexStringLower(SHA256.HashData(fetched)));
        AssertLargeSegments(after.TxBytes - before.TxBytes, after.TxPackets - before.TxPackets, "guest to host");
    }

    [Fact]
    public async Task A_guest_asking_for_another_address_ends_on_the_leased_one()
    {
        var http = LoopbackPorts.Free();
        await using var guest = await BootAsync("-publish", $"{http}:80");
        const string script = "-i eth0 -s /usr/share/udhcpc/default.script";

        // A client that asks for .9 from the start is offered, and gets, the leased address.
        var asked = await guest.RunAsync($"killall udhcpc; udhcpc -f -q -n -t 5 -T 2 -r 192.168.65.9 {script} 2>&1; ip -4 addr show eth0");
        Assert.Contains("lease of 192.168.65.3 obtained", asked);
        Assert.Contains("inet 192.168.65.3/24", asked);
        Assert.DoesNotContain("192.168.65.9/", asked);

        // A renewal that asks for .9 (the requested-address option, as a client remembering .9 sends it) is NAKed,
        // and the client starts over and ends on the leased address again.
        var renewed = await guest.RunAsync(
            $"udhcpc -f -t 5 -T 2 -x 0x32:c0a84109 {script} -p /tmp/udhcpc.pid </dev/null >/tmp/udhcpc.log 2>&1 & " +
            "leases() { grep -c 'lease of' /tmp/udhcpc.log; }; " +
            "for i in $(seq 60); do [ \"$(leases)\" -ge 1 ] && break; sleep 1; done; kill -USR1 $(cat /tmp/udhcpc.pid); " +
            "for i in $(seq 60); do [ \"$(leases)\" -ge 2 ] && break; sleep 1; done; " +
            // udhcpc logs the lease before its script puts the address back on the interface.
            "for i in $(seq 60); do ip -4 addr show eth0 | grep -q 'inet 192.168.65.3/' && break; sleep 1; done; " +
            "kill $(cat /tmp/udhcpc.pid); cat /tmp/udhcpc.log; ip -4 addr show eth0");
        Assert.Contains("received DHCP NAK", renewed);
        Assert.Equal(2, Regex.Count(renewed, @"lease of 192\.168\.65\.3 obtained"));
        Assert.DoesNotContain("lease of 192.168.65.9", renewed);
        Assert.Contains("inet 192.168.65.3/24", renewed);

        // Published ports still reach the guest, since it is where lkrun said it would be.
        using var client = new HttpClient();
        Assert.Equal("lkrun-guest http ok\n", await client.GetStringAsync($"http://127.0.0.1:{http}/", TestContext.Current.CancellationToken));
    }

    /// <summary>At MTU 1500 a packet carries at most 1514 bytes; 64 KiB segments average far above that.</summary>
    private static void AssertLargeSegments(long bytes, long packets, string direction)
    {
        Assert.True(bytes >= TransferBytes, $"{direction}: only {bytes} bytes counted on eth0");
        Assert.True(bytes / packets > 16 * 1024, $"{direction}: {packets} packets for {bytes} bytes, {bytes / packets} bytes each");
    }

    private async Task<Guest> BootAsync(params string[] flags)
    {
        var sshPort = LoopbackPorts.Free();
        var ssh = await GuestSsh.CreateKeyAsync(_scratch["id_ed25519"]);
        var lkrun = LkrunProcess.Run(
            _scratch["state"], ["-mem", "256", "-publish", $"{sshPort}:22", "-data", ssh.AuthorizingUserData, .. flags], TestImages.Guest,
            environment: QemuLink.Environment(Link));
        await lkrun.WaitForOutputAsync("lkrun-guest: user-data exit 0");
        await lkrun.WaitForErrorAsync(@"^lkrun: guest address 192\.168\.65\.3$");
        await QemuLink.AssertInUseAsync(lkrun, Link);
        return new Guest(lkrun, ssh, sshPort);
    }

    private sealed class Guest(LkrunProcess lkrun, GuestSsh ssh, int sshPort) : IAsyncDisposable
    {
        public sealed record Counters(long RxBytes, long RxPackets, long TxBytes, long TxPackets);

        /// <summary>Runs a shell command in the guest and returns its output; a failure fails the test.</summary>
        public Task<string> RunAsync(string command) => ssh.RunAsync(sshPort, command);

        public async Task<Counters> CountersAsync()
        {
            var values = (await RunAsync("cd /sys/class/net/eth0/statistics && cat rx_bytes rx_packets tx_bytes tx_packets"))
                .Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(long.Parse).ToArray();
            return new Counters(values[0], values[1], values[2], values[3]);
        }

        public async ValueTask DisposeAsync()
        {
            await lkrun.SignalAsync(Posix.SIGTERM);
            Assert.Equal(0, await lkrun.WaitForExitAsync());
            Assert.False(File.Exists(Path.Combine(lkrun.StateDirectory, "net.sock")));
            Assert.False(File.Exists(Path.Combine(lkrun.StateDirectory, "net-device.sock")));
            await lkrun.DisposeAsync();
        }
    }

    private static async Task<string> SendAndReadReplyAsync(int port, byte[] data)
    {
        using var timeout = Timeout();
        using var client = new TcpClient();
        await client.ConnectAsync(IPAddress.Loopback, port, timeout.Token);
        var stream = client.GetStream();
        await stream.WriteAsync(data, timeout.Token);
        client.Client.Shutdown(SocketShutdown.Send);
        using var reader = new StreamReader(stream);
        return await reader.ReadToEndAsync(timeout.Token);
    }

    private static async Task<byte[]> ReadAllAsync(int port)
    {
        using var timeout = Timeout();
        using var client = new TcpClient();
        await client.ConnectAsync(IPAddress.Loopback, port, timeout.Token);
        using var received = new MemoryStream();
        await client.GetStream().CopyToAsync(received, timeout.Token);
        return received.ToArray();
    }

    private static CancellationTokenSource Timeout()
    {
        var timeout = CancellationTokenSource.CreateLinkedTokenSource(TestContext.Current.CancellationToken);
        timeout.CancelAfter(TimeSpan.FromMinutes(3));
        return timeout;
    }
}
