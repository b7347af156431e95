using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using Lkrun.Integration.Tests.Infrastructure;
using Lkrun.Services.Network;
using Lkrun.Tests.VsockBehaviour;

namespace Lkrun.Integration.Tests.Faults;

/// <summary>
/// A guest that attacks lkrun's host services from inside, with the test guest's <c>lkrun-hostile</c> tool: a flood
/// of malformed frames, DHCP from thousands of made-up MACs and ARP through a raw packet socket, and garbage written
/// into the vsock device's rings by a guest that drives the device itself. lkrun must report each kind of trouble
/// once, and the VM's other traffic (a published port, the host's loopback through the gateway, the console, and
/// vsock once the guest resets its device) must keep working.
/// </summary>
public sealed class HostileGuestTests : IDisposable
{
    private const string GuestAddress = "192.168.65.3";
    private const string HttpPage = "lkrun-guest http ok\n";

    private readonly Scratch _scratch = new();

    public void Dispose() => _scratch.Dispose();

    private static CancellationToken Cancellation => TestContext.Current.CancellationToken;

    [Fact]
    public async Task A_guest_flooding_the_nat_with_malformed_frames_dhcp_and_arp_is_reported_once_and_its_traffic_flows()
    {
        using var hostService = HostPage.Start("host loopback ok\n");
        var http = LoopbackPorts.Free();
        await using var vm = await HostileVm.BootAsync(_scratch, ["-publish", $"{http}:80"]);
        Assert.Equal(HttpPage, await GetAsync(http));
        // busybox wget crashes with -T, so timeout(1) bounds it.
        var guestFetch = $"timeout 30 wget -q -O - http://192.168.65.1:{hostService.Port}/";

        // The flood runs in the background while the guest fetches from the host through the gateway, and this
        // test fetches the guest's page through the published port.
        var flood = vm.RunInGuestAsync(
            $"lkrun-hostile net-flood eth0 2000 1 & pid=$!; n=0; while kill -0 $pid 2>/dev/null; do " +
            $"[ \"$({guestFetch})\" = 'host loopback ok' ] || echo 'fetch failed during the flood'; n=$((n+1)); done; " +
            "wait $pid; echo \"fetched $n times during the flood\"",
            TimeSpan.FromMinutes(3));
        var pagesDuringFlood = 0;
        while (!flood.IsCompleted)
        {
            Assert.Equal(HttpPage, await GetAsync(http));
            pagesDuringFlood++;
        }
        var (floodOutput, floodStatus) = await flood;
        Assert.True(floodStatus == 0, floodOutput);
        Assert.Matches(@"net-flood: sent \d+ frames \(\d+ malformed, 4000 dhcp, \d+ arp\)", floodOutput);
        Assert.False(floodOutput.Contains("fetch failed", StringComparison.Ordinal), floodOutput);
        Assert.Matches(@"fetched [1-9]\d* times during the flood", floodOutput);
        Assert.True(pagesDuringFlood > 0);

        // Afterwards: the console answers, the published port serves, the host's loopback is reached through the
        // gateway, and a new DHCP exchange from the VM's interface ends on its own address again.
        var (after, status) = await vm.RunInGuestAsync(
            $"echo \"host: $({guestFetch})\"; killall udhcpc; " +
            "udhcpc -f -q -n -t 5 -T 2 -i eth0 -s /usr/share/udhcpc/default.script 2>&1; ip -4 addr show eth0",
            TimeSpan.FromMinutes(2));
        Assert.True(status == 0, after);
        Assert.Contains("host: host loopback ok", after);
        Assert.Contains($"lease of {GuestAddress} obtained", after);
        Assert.Contains($"inet {GuestAddress}/24", after);
        Assert.Equal(HttpPage, await GetAsync(http));

        // The registry still holds the one lease; the storm's MACs were never recorded.
        using var registry = JsonDocument.Parse(File.ReadAllText(_scratch["xdg-state/lkrun/leases.json"]));
        var lease = Assert.Single(registry.RootElement.EnumerateObject().Single().Value.EnumerateArray());
        Assert.Contains(GuestAddress, lease.GetRawText());

        // Each kind of trouble was reported once, not per frame.
        Assert.Equal(1, Regex.Count(vm.Console, "lkrun: network: the guest sent an? [^\r\n]*, which lkrun drops; further ones are dropped without a report"));
        Assert.Equal(1, Regex.Count(vm.Console, "lkrun: network: DHCP from [0-9a-f:]+, which is not the VM's interface, gets no answer"));
        Assert.Equal(1, Regex.Count(vm.Console, "lkrun: network: the guest sent an IPv4 fragment; the NAT network drops fragmented datagrams"));
        Assert.True(Regex.Count(vm.Console, "lkrun: network:") <= Enum.GetValues<GuestTrouble>().Length, vm.Console);
        vm.ReportMemory("after the flood");
    }

    [Fact]
    public async Task A_guest_writing_garbage_into_its_vsock_rings_or_sizing_them_wrongly_breaks_only_vsock_until_it_resets_the_device()
    {
        var http = LoopbackPorts.Free();
        await using var vm = await HostileVm.BootAsync(_scratch, ["-publish", $"{http}:80", "-vsock-ports", $"{GuestPorts.Echo}"]);
        using (var before = vm.ConnectGuestPort(GuestPorts.Echo))
        {
            Assert.Equal("before"u8.ToArray(), await VsockStreams.SendAndReceiveAllAsync(before, "before"u8.ToArray()));
        }

        // The tool's report goes through a file: lkrun's own lines land on the same terminal while it runs.
        var (garbage, status) = await vm.RunInGuestAsync(
            "lkrun-hostile vsock-garbage >/tmp/garbage.log 2>&1; s=$?; cat /tmp/garbage.log; [ $s = 0 ]", TimeSpan.FromMinutes(2));
        Assert.True(status == 0, garbage);
        Assert.True(garbage.Contains("transmit 20 of 20 chains returned", StringComparison.Ordinal), garbage);
        Assert.Contains("available index moved 1000 ahead, 0 more chains returned", garbage);
        Assert.Contains("device reset and given back to virtio-pci", garbage);

        // One line for the bad chains and packets, one for the broken ring; the console and the network still work.
        Assert.Equal(1, Regex.Count(vm.Console, "lkrun: vsock: [^\r\n]*; further bad packets and buffers from the guest are dropped without a report"));
        Assert.Equal(1, Regex.Count(vm.Console,
            @"lkrun: vsock: (transmit queue: available index \d+ is more than 64 ahead of \d+|receive queue: available head 200 is outside a queue of 64); vsock stops until the guest resets the device"));
        Assert.Equal(2, Regex.Count(vm.Console, "lkrun: vsock:"));
        Assert.Equal(HttpPage, await GetAsync(http));

        // The driver took the device back (virtio-pci reset it, and QEMU started lkrun's rings afresh): vsock works.
        var (cid, cidStatus) = await vm.RunInGuestAsync("lkrun-guest-tool local-cid", TimeSpan.FromMinutes(1));
        Assert.True(cidStatus == 0, cid);
        Assert.Equal("3", cid.Trim());
        using (var after = vm.ConnectGuestPort(GuestPorts.Echo))
        {
            Assert.Equal("after the garbage"u8.ToArray(), await VsockStreams.SendAndReceiveAllAsync(after, "after the garbage"u8.ToArray()));
        }

        // A queue size that is no power of two reaches lkrun through QEMU unchecked: the rings stay stopped (once
        // reported) rather than the vhost-user connection ending, which QEMU would never make again.
        var (oddSize, oddStatus) = await vm.RunInGuestAsync(
            "lkrun-hostile vsock-garbage 12 >/tmp/garbage.log 2>&1; s=$?; cat /tmp/garbage.log; [ $s = 0 ] && lkrun-guest-tool local-cid",
            TimeSpan.FromMinutes(2));
        Assert.True(oddStatus == 0, oddSize);
        Assert.True(oddSize.Contains("transmit 0 of 20 chains returned", StringComparison.Ordinal), oddSize);
        Assert.Equal(1, Regex.Count(vm.Console,
            @"lkrun: vhost-user [^\r\n]*: ring \d: queue size 12 is not a power of two up to \d+; the ring stays stopped until the guest resets the device"));
        Assert.DoesNotContain("closing the connection", vm.Console);
        using var afterOddSize = vm.ConnectGuestPort(GuestPorts.Echo);
        Assert.Equal("after the odd size"u8.ToArray(), await VsockStreams.SendAndReceiveAllAsync(afterOddSize, "after the odd size"u8.ToArray()));
        vm.ReportMemory("after the garbage");
    }

    private static async Task<string> GetAsync(int port)
    {
        using var client = new HttpClient { Timeout = TimeSpan.FromSeconds(60) };
        return await client.GetStringAsync($"http://127.0.0.1:{port}/", Cancellation);
    }

    /// <summary>A one-page HTTP server on the host's loopback, which the guest reaches through the gateway.</summary>
    private sealed class HostPage : IDisposable
    {
        private readonly TcpListener _listener = new(IPAddress.Loopback, 0);
        private readonly CancellationTokenSource _stop = new();

        private HostPage(string body)
        {
            _listener.Start();
            _ = ServeAsync(Encoding.ASCII.GetBytes($"HTTP/1.0 200 OK\r\nContent-Length: {body.Length}\r\n\r\n{body}"));
        }

        public int Port => ((IPEndPoint)_listener.LocalEndpoint).Port;

        public static HostPage Start(string body) => new(body);

        private async Task ServeAsync(byte[] response)
        {
            try
            {
                while (true)
                {
                    var client = await _listener.AcceptTcpClientAsync(_stop.Token);
                    _ = AnswerAsync(client, response);
                }
            }
            catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException or SocketException)
            {
                // Stopped.
            }
        }

        private async Task AnswerAsync(TcpClient client, byte[] response)
        {
            using (client)
            {
                try
                {
                    var stream = client.GetStream();
                    var request = new byte[4096];
                    var read = 0;
                    // The request ends with an empty line; its content does not matter.
                    while (read < request.Length && !Encoding.ASCII.GetString(request, 0, read).Contains("\r\n\r\n"))
                    {
                        var count = await stream.ReadAsync(request.AsMemory(read), _stop.Token);
                        if (count == 0)
                        {
                            return;
                        }
                        read += count;
                    }
                    await stream.WriteAsync(response, _stop.Token);
                }
                catch (Exception e) when (e is IOException or OperationCanceledException or SocketException)
                {
                    // The guest went away mid-request: its business.
                }
            }
        }

        public void Dispose()
        {
            _stop.Cancel();
            _listener.Stop();
            _stop.Dispose();
        }
    }

    /// <summary>
    /// The test guest on q35 (the vsock device is then a PCI function the guest can take from its driver), with
    /// the NAT network and an interactive console on which the tests run shell commands.
    /// </summary>
    private sealed class HostileVm : IAsyncDisposable
    {
        private readonly LkrunProcess _lkrun;

        private HostileVm(LkrunProcess lkrun, int lkrunPid)
        {
            _lkrun = lkrun;
            LkrunPid = lkrunPid;
        }

        public int LkrunPid { get; }

        /// <summary>What lkrun and the guest printed on the terminal (lkrun's stderr shares it).</summary>
        public string Console => _lkrun.Output;

        public static async Task<HostileVm> BootAsync(Scratch scratch, string[] flags)
        {
            var lkrun = LkrunProcess.Run(scratch["state"], ["-mem", "256", "-machine", "q35", .. flags], TestImages.Guest, terminal: true);
            try
            {
                await lkrun.WaitForOutputAsync($@"lkrun: guest address {Regex.Escape(GuestAddress)}\r?$");
                await lkrun.WaitForReadyAsync();
                var vm = new HostileVm(lkrun, await lkrun.LkrunPidAsync());
                await lkrun.TypeAsync("set +m; PS1=''; PS2=''\r");
                Assert.Equal(0, (await vm.RunInGuestAsync("true", TimeSpan.FromSeconds(60))).Status);
                return vm;
            }
            catch
            {
                await lkrun.DisposeAsync();
                throw;
            }
        }

        public Socket ConnectGuestPort(uint port)
        {
            var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            socket.Connect(new UnixDomainSocketEndPoint(Path.Combine(_lkrun.StateDirectory, $"guest.{port:x8}")));
            return socket;
        }

        /// <summary>Runs a shell command on the guest console; returns what it printed and its exit status.</summary>
        public Task<(string Output, int Status)> RunInGuestAsync(string command, TimeSpan timeout) => _lkrun.RunOnConsoleAsync(command, timeout);

        /// <summary>lkrun's resident memory and descriptors, for the test's output.</summary>
        public void ReportMemory(string when)
        {
            var rss = File.ReadLines($"/proc/{LkrunPid}/status").First(l => l.StartsWith("VmRSS:", StringComparison.Ordinal));
            var descriptors = Directory.GetFileSystemEntries($"/proc/{LkrunPid}/fd").Length;
            TestContext.Current.SendDiagnosticMessage($"lkrun {when}: {rss.Replace("\t", " ")}, {descriptors} descriptors");
        }

        public async ValueTask DisposeAsync()
        {
            try
            {
                await _lkrun.SignalAsync(Posix.SIGTERM);
                Assert.Equal(0, await _lkrun.WaitForExitAsync());
            }
            finally
            {
                await _lkrun.DisposeAsync();
            }
        }
    }
}
