using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.RegularExpressions;
using Lkrun.Integration.Tests.Infrastructure;
using Lkrun.Integration.Tests.Vsock;

namespace Lkrun.Integration.Tests.Faults;

/// <summary>
/// lkrun runs out of descriptors: it runs under <c>prlimit --nofile</c> (hard and soft, so that nothing can raise
/// it), the guest holds 1,000 vsock connections to a host listener and 4,000 TCP connections through the NAT to
/// the host's loopback, and the host opens 1,000 connections to a <c>guest.PPPPPPPP</c> socket at once. lkrun must
/// refuse what it cannot hold (the guest's connects fail, the host's connections close: nothing hangs), keep
/// serving the connections it holds and its console, not spin, say so once, and give every descriptor back when
/// the connections close.
/// </summary>
public sealed class DescriptorExhaustionTests : IAsyncDisposable
{
    /// <summary>Far below the 6,000 descriptors the connections would take, far above what lkrun needs to run.</summary>
    private const int DescriptorLimit = 4096;

    /// <summary>The guest's holding server for host connections, and the host's listener for the guest's.</summary>
    private const uint GuestHoldPort = 6100;
    private const uint HostHoldPort = 6200;

    private const int GuestTcpConnections = 4000;
    private const int GuestVsockConnections = 1000;
    private const int HostVsockConnections = 1000;

    private static readonly TimeSpan CommandTimeout = TimeSpan.FromSeconds(120);

    private readonly List<Socket> _sockets = [];
    private VsockTestVm? _vm;

    public async ValueTask DisposeAsync()
    {
        CloseAll();
        if (_vm is not null)
        {
            await StopAsync(_vm);
        }
    }

    /// <summary>SIGTERM, after which lkrun must exit 0 having removed its sockets; a failure shows lkrun's terminal.</summary>
    private static async Task StopAsync(VsockTestVm vm)
    {
        try
        {
            await vm.DisposeAsync();
        }
        catch (Exception e)
        {
            Assert.Fail($"{e.Message}\nlkrun's terminal:\n{vm.Console[Math.Max(0, vm.Console.Length - 4000)..]}");
        }
    }

    [Fact]
    public async Task Lkrun_refuses_what_it_cannot_hold_keeps_serving_the_rest_and_gives_every_descriptor_back()
    {
        var tcpPort = LoopbackPorts.Free();
        var httpPort = LoopbackPorts.Free();
        _vm = await VsockTestVm.BootAsync(["-mem", "512", "-vsock-ports", $"{GuestHoldPort}", "-publish", $"{httpPort}:80"], DescriptorLimit);
        var vm = _vm;
        Assert.Matches($@"Max open files\s+{DescriptorLimit}\s+{DescriptorLimit}\s", File.ReadAllText($"/proc/{vm.LkrunPid}/limits"));
        var tcpAccepted = Listen(new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp), new IPEndPoint(IPAddress.Loopback, tcpPort));
        var vsockAccepted = Listen(new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified), new UnixDomainSocketEndPoint(vm.HostSocket(HostHoldPort)));
        await RunAsync($"lkrun-guest-tool vsock-hold-server {GuestHoldPort} >/tmp/hold-server.out 2>&1 & echo $! >/tmp/holders");
        var baseline = vm.LkrunDescriptors;

        // One connection of each kind before the flood, to be served through it.
        Assert.Equal("vsock-hold: 1 established, 0 failed", await HoldInGuestAsync("vsock-probe", $"vsock-hold 2 {HostHoldPort} 1"));
        Assert.Equal("tcp-hold: 1 established, 0 failed", await HoldInGuestAsync("tcp-probe", $"tcp-hold 192.168.65.1 {tcpPort} 1"));
        var guestVsockProbe = await TakeAsync(vsockAccepted);
        var guestTcpProbe = await TakeAsync(tcpAccepted);
        var hostProbe = Track(vm.ConnectGuestPort(GuestHoldPort));
        await AssertEchoesAsync(hostProbe, "host to guest before");

        // The flood: the vsock device holds 1,024 connections at most, so the host's connections mostly close;
        // the NAT then takes what descriptors are left.
        var guestVsock = ParseHeld(await HoldInGuestAsync("vsock", $"vsock-hold 2 {HostHoldPort} {GuestVsockConnections}"));
        Assert.Equal(GuestVsockConnections, guestVsock.Established);
        var hostOutcomes = await Task.WhenAll(Enumerable.Range(0, HostVsockConnections).Select(_ => ConnectAndProbeAsync(vm.GuestSocket(GuestHoldPort))));
        var tcp = ParseHeld(await HoldInGuestAsync("tcp", $"tcp-hold 192.168.65.1 {tcpPort} {GuestTcpConnections}"));
        Assert.True(tcp.Established > 1000, $"only {tcp.Established} TCP connections held");
        Assert.True(tcp.Failed > 0, "every TCP connection was held: the limit did not bite");
        Assert.True(hostOutcomes.Count(served => served) > 0, "no host connection was served");
        Assert.True(hostOutcomes.Count(served => !served) > 0, "every host connection was served");
        Assert.True(vm.LkrunDescriptors > DescriptorLimit - 16, $"lkrun holds {vm.LkrunDescriptors} descriptors: not exhausted");
        TestContext.Current.TestOutputHelper?.WriteLine(
            $"lkrun: {baseline} descriptors at start, {vm.LkrunDescriptors} of {DescriptorLimit} exhausted; guest TCP {tcp.Established} held, {tcp.Failed} refused; " +
            $"guest vsock {guestVsock.Established} held; host vsock {hostOutcomes.Count(served => served)} served, {hostOutcomes.Count(served => !served)} refused");

        // Exhausted: lkrun sleeps rather than spins, also with a connection to a published port waiting, which
        // libslirp cannot accept (it stays in the listener's backlog until descriptors come back).
        var waitingForPublishedPort = Track(new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp));
        await waitingForPublishedPort.ConnectAsync(new IPEndPoint(IPAddress.Loopback, httpPort), TestContext.Current.CancellationToken);
        var cpuBefore = CpuTicks(vm.LkrunPid);
        await Task.Delay(TimeSpan.FromSeconds(5), TestContext.Current.CancellationToken);
        var cpuTicks = CpuTicks(vm.LkrunPid) - cpuBefore;
        Assert.True(cpuTicks < 100, $"lkrun used {cpuTicks} CPU ticks in 5 s out of descriptors with nothing to do (a spinning thread takes about 500)");

        // The connections it holds still carry bytes, and its console still answers (every step above used it).
        await AssertEchoesAsync(guestVsockProbe, "guest to host vsock");
        await AssertEchoesAsync(guestTcpProbe, "guest to host TCP");
        await AssertEchoesAsync(hostProbe, "host to guest vsock");
        Assert.Equal((" console-ok\n", 0), await vm.RunInGuestAsync("echo ' console-ok'", CommandTimeout));

        // New connections are refused at once, none left hanging.
        Assert.False(await ConnectAndProbeAsync(vm.GuestSocket(VsockTestVm.EchoPort)), "a new host connection was served while out of descriptors");
        Assert.Matches("^vsock-hold: 0 established, 1 failed, 1 ", await HoldInGuestAsync("vsock-late", $"vsock-hold 2 {HostHoldPort} 1"));
        Assert.Matches("^tcp-hold: 0 established, 1 failed, 1 ", await HoldInGuestAsync("tcp-late", $"tcp-hold 192.168.65.1 {tcpPort} 1"));
        Assert.Equal("", await AttachToConsoleAsync());
        Assert.Equal("", await AskControlApiAsync());
        Assert.Single(Regex.Matches(vm.Console, "^lkrun: .*out of file descriptors.*$", RegexOptions.Multiline));

        // Everything closes: lkrun is back to the descriptors it started with, and serves new connections again.
        await StopHoldersAsync();
        CloseAll();
        await LkrunProcess.WaitUntilAsync(() => vm.LkrunDescriptors <= baseline, TimeSpan.FromSeconds(90), $"lkrun's descriptors to come back to {baseline}");
        Assert.Equal(baseline, vm.LkrunDescriptors);
        using (var again = vm.ConnectGuestPort(VsockTestVm.EchoPort))
        {
            await AssertEchoesAsync(again, "host to guest vsock after");
        }
        File.Delete(vm.HostSocket(HostHoldPort));
        tcpPort = LoopbackPorts.Free();
        vsockAccepted = Listen(new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified), new UnixDomainSocketEndPoint(vm.HostSocket(HostHoldPort)));
        tcpAccepted = Listen(new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp), new IPEndPoint(IPAddress.Loopback, tcpPort));
        Assert.Equal("vsock-hold: 1 established, 0 failed", await HoldInGuestAsync("vsock-after", $"vsock-hold 2 {HostHoldPort} 1"));
        Assert.Equal("tcp-hold: 1 established, 0 failed", await HoldInGuestAsync("tcp-after", $"tcp-hold 192.168.65.1 {tcpPort} 1"));
        await AssertEchoesAsync(await TakeAsync(vsockAccepted), "guest to host vsock after");
        await AssertEchoesAsync(await TakeAsync(tcpAccepted), "guest to host TCP after");
        Assert.StartsWith("refused ", await AttachToConsoleAsync());
        Assert.StartsWith("HTTP/1.1 200 OK", await AskControlApiAsync());
        using (var client = new HttpClient())
        {
            Assert.Equal("lkrun-guest http ok\n", await client.GetStringAsync($"http://127.0.0.1:{httpPort}/", TestContext.Current.CancellationToken));
        }
        await StopHoldersAsync();
    }

    [Fact]
    public async Task Stopped_while_out_of_descriptors_lkrun_powers_the_guest_off_cleanly()
    {
        var tcpPort = LoopbackPorts.Free();
        _vm = await VsockTestVm.BootAsync(["-mem", "512"], DescriptorLimit);
        var vm = _vm;
        Listen(new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Unspecified), new IPEndPoint(IPAddress.Loopback, tcpPort));
        var tcp = ParseHeld(await HoldInGuestAsync("tcp", $"tcp-hold 192.168.65.1 {tcpPort} {DescriptorLimit + 1000}"));
        Assert.True(tcp.Failed > 0, "every TCP connection was held: the limit did not bite");
        Assert.True(vm.LkrunDescriptors > DescriptorLimit - 16, $"lkrun holds {vm.LkrunDescriptors} descriptors: not exhausted");

        // SIGTERM presses the power button; the guest powers off and lkrun, still out of descriptors, exits 0.
        _vm = null;
        await StopAsync(vm);
    }

    private Task StopHoldersAsync() => RunAsync("kill $(cat /tmp/holders) 2>/dev/null; rm /tmp/holders");

    private async Task<string> RunAsync(string command)
    {
        var (output, status) = await _vm!.RunInGuestAsync(command, CommandTimeout);
        Assert.True(status == 0, $"'{command}' exited {status}: {output}");
        return output;
    }

    /// <summary>Starts a holder in the guest's background and returns the line it prints once its connects are done.</summary>
    private async Task<string> HoldInGuestAsync(string name, string arguments)
    {
        await RunAsync($"lkrun-guest-tool {arguments} >/tmp/{name}.out 2>&1 & echo $! >>/tmp/holders");
        var output = await RunAsync(
            $"for i in $(seq 600); do grep -q -e established -e {ProgramName} /tmp/{name}.out && break; sleep 0.2; done; cat /tmp/{name}.out");
        // lkrun's own lines share the terminal with the guest's output.
        return string.Join('\n', output.Split('\n', StringSplitOptions.RemoveEmptyEntries).Where(line => !line.StartsWith("lkrun: ", StringComparison.Ordinal)));
    }

    private const string ProgramName = "lkrun-guest-tool:";

    private static (int Established, int Failed) ParseHeld(string line)
    {
        var match = Regex.Match(line, @"^\S+: (\d+) established, (\d+) failed");
        Assert.True(match.Success, $"unexpected holder output: {line}");
        return (int.Parse(match.Groups[1].Value), int.Parse(match.Groups[2].Value));
    }

    /// <summary>Listens with a backlog that takes a flood, and accepts (and keeps) every connection.</summary>
    private ConcurrentQueue<Socket> Listen(Socket listener, EndPoint endPoint)
    {
        Track(listener);
        listener.Bind(endPoint);
        listener.Listen(4096);
        var accepted = new ConcurrentQueue<Socket>();
        _ = Task.Run(async () =>
        {
            try
            {
                while (true)
                {
                    accepted.Enqueue(Track(await listener.AcceptAsync()));
                }
            }
            catch (Exception e) when (e is SocketException or ObjectDisposedException)
            {
                // Closed by the test.
            }
        });
        return accepted;
    }

    private static async Task<Socket> TakeAsync(ConcurrentQueue<Socket> accepted)
    {
        Socket? socket = null;
        await LkrunProcess.WaitUntilAsync(() => accepted.TryDequeue(out socket), CommandTimeout, "a connection to the host listener");
        return socket!;
    }

    /// <summary>
    /// Connects to a guest.* socket and asks for an echo: true when the guest answered, false when the connection
    /// was refused or closed. A connection left hanging fails the test.
    /// </summary>
    private async Task<bool> ConnectAndProbeAsync(string path)
    {
        var socket = Track(new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified));
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(TestContext.Current.CancellationToken);
        timeout.CancelAfter(CommandTimeout);
        try
        {
            await socket.ConnectAsync(new UnixDomainSocketEndPoint(path), timeout.Token);
            var probe = "probe\n"u8.ToArray();
            await socket.SendAsync(probe, SocketFlags.None, timeout.Token);
            var reply = new byte[probe.Length];
            var received = 0;
            while (received < reply.Length)
            {
                var count = await socket.ReceiveAsync(reply.AsMemory(received), SocketFlags.None, timeout.Token);
                if (count == 0)
                {
                    return false;
                }
                received += count;
            }
            Assert.Equal(probe, reply);
            return true;
        }
        catch (SocketException)
        {
            return false;
        }
        catch (OperationCanceledException) when (!TestContext.Current.CancellationToken.IsCancellationRequested)
        {
            Assert.Fail($"a connection to {path} hung for {CommandTimeout.TotalSeconds} s: neither served nor refused");
            throw;
        }
    }

    /// <summary>The control API's answer to <c>GET /vm/state</c>, or "" when the connection is closed unanswered.</summary>
    private Task<string> AskControlApiAsync() =>
        ExchangeAsync("control.sock", "GET /vm/state HTTP/1.1\r\nHost: lkrun\r\nConnection: close\r\n\r\n");

    /// <summary>
    /// What <c>lkrun console</c> would be told on attaching (the console is lkrun's terminal, so a refusal), or ""
    /// when the connection is closed without a word; a connection left hanging fails the test.
    /// </summary>
    private Task<string> AttachToConsoleAsync() => ExchangeAsync("console.sock", "attach 24\n");

    /// <summary>Sends <paramref name="request"/> to a socket of the state dir and reads the answer to its end; hanging fails the test.</summary>
    private async Task<string> ExchangeAsync(string socketName, string request)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(TestContext.Current.CancellationToken);
        timeout.CancelAfter(CommandTimeout);
        using var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        await socket.ConnectAsync(new UnixDomainSocketEndPoint(Path.Combine(_vm!.StateDirectory, socketName)), timeout.Token);
        try
        {
            await socket.SendAsync(Encoding.ASCII.GetBytes(request), SocketFlags.None, timeout.Token);
            using var reply = new MemoryStream();
            var buffer = new byte[256];
            int count;
            while ((count = await socket.ReceiveAsync(buffer, SocketFlags.None, timeout.Token)) > 0)
            {
                reply.Write(buffer, 0, count);
            }
            return Encoding.UTF8.GetString(reply.ToArray());
        }
        catch (SocketException)
        {
            return "";
        }
        catch (OperationCanceledException) when (!TestContext.Current.CancellationToken.IsCancellationRequested)
        {
            Assert.Fail($"{socketName} hung for {CommandTimeout.TotalSeconds} s: neither answered nor closed");
            throw;
        }
    }

    private static async Task AssertEchoesAsync(Socket socket, string what)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(TestContext.Current.CancellationToken);
        timeout.CancelAfter(CommandTimeout);
        var probe = Encoding.ASCII.GetBytes($"echo {what}\n");
        await socket.SendAsync(probe, SocketFlags.None, timeout.Token);
        var reply = new byte[probe.Length];
        for (var received = 0; received < reply.Length;)
        {
            var count = await socket.ReceiveAsync(reply.AsMemory(received), SocketFlags.None, timeout.Token);
            Assert.True(count > 0, $"{what}: the connection closed");
            received += count;
        }
        Assert.Equal(probe, reply);
    }

    /// <summary>The user and system CPU time of <paramref name="pid"/>, in clock ticks (100 a second).</summary>
    private static long CpuTicks(int pid)
    {
        var stat = File.ReadAllText($"/proc/{pid}/stat");
        var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
        // utime and stime are fields 14 and 15; fields[0] is field 3 (the state).
        return long.Parse(fields[11]) + long.Parse(fields[12]);
    }

    private Socket Track(Socket socket)
    {
        lock (_sockets)
        {
            _sockets.Add(socket);
        }
        return socket;
    }

    private void CloseAll()
    {
        lock (_sockets)
        {
            foreach (var socket in _sockets)
            {
                socket.Dispose();
            }
            _sockets.Clear();
        }
    }
}
