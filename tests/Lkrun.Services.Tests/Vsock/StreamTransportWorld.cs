using System.Collections.Concurrent;
using System.Net.Sockets;
using Lkrun.Services.Tests.Fakes;
using Lkrun.Services.State;
using Lkrun.Services.Vsock;
using Lkrun.Tests.VsockBehaviour;

namespace Lkrun.Services.Tests.Vsock;

/// <summary>
/// The stream transport beneath a front end in a scratch state directory, over a
/// <see cref="FakeGuestSocketDevice"/> whose guest serves <see cref="GuestPorts"/>. Timings are short: a connect
/// gives up after 300 ms and host listeners are looked for every 20 ms.
/// </summary>
public sealed class StreamTransportWorld : IVsockWorld, IAsyncLifetime
{
    internal static readonly StreamTransportOptions ShortTimings = new()
    {
        ConnectTimeout = TimeSpan.FromMilliseconds(300),
        HostListenerRescan = TimeSpan.FromMilliseconds(20),
        FaultDelay = null,
    };

    private readonly ConcurrentQueue<string> _reports = new();
    private UnixSocketFrontEnd? _frontEnd;
    private VsockStreamTransport? _transport;

    public string StateDirectory { get; } = Directory.CreateTempSubdirectory("lkrun-vsock-").FullName;

    internal FakeGuestSocketDevice Device { get; } = new();

    internal VsockStreamTransport Transport => _transport ?? throw new InvalidOperationException("not started");

    public int IdleDescriptors { get; private set; }

    /// <summary>
    /// The test process's socket descriptors (the runtime also keeps the assemblies it loads open), after a full
    /// collection: sockets that other tests dropped undisposed close in finalizers, whenever the collector runs.
    /// </summary>
    public int Descriptors
    {
        get
        {
            GC.Collect();
            GC.WaitForPendingFinalizers();
            return new DirectoryInfo("/proc/self/fd").EnumerateFileSystemInfos()
                .Count(descriptor => descriptor.LinkTarget?.StartsWith("socket:", StringComparison.Ordinal) == true);
        }
    }

    public long? ResidentBytes => null;

    public string Reports => string.Join("\n", _reports);

    public async ValueTask InitializeAsync()
    {
        Device.ServeEcho(GuestPorts.Echo);
        Device.ServeDiscard(GuestPorts.Discard);
        Device.ServeSource(GuestPorts.Source);
        _frontEnd = UnixSocketFrontEnd.Create(new StateLayout(StateDirectory), [GuestPorts.Echo, GuestPorts.Discard, GuestPorts.Source, GuestPorts.Silent], _reports.Enqueue);
        _transport = VsockStreamTransport.Start(_frontEnd, Device, ShortTimings);

        // One stream first, so that the runtime's lazily opened descriptors (its socket poller) count as idle.
        using (var socket = ConnectGuestPort(GuestPorts.Echo))
        {
            Assert.Equal([1], await VsockStreams.SendAndReceiveAllAsync(socket, [1]));
        }

        await Device.WaitUntilAllReleasedAsync();
        IdleDescriptors = Descriptors;
    }

    public async ValueTask DisposeAsync()
    {
        if (_transport is not null)
        {
            await _transport.DisposeAsync();
        }

        if (_frontEnd is not null)
        {
            await _frontEnd.DisposeAsync();
        }

        await Device.DisposeAsync();
        Directory.Delete(StateDirectory, recursive: true);
    }

    public Socket ConnectGuestPort(uint port)
    {
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        socket.Connect(new UnixDomainSocketEndPoint(new StateLayout(StateDirectory).GuestVsockSocket(port)));
        return socket;
    }

    public async Task<Socket> ListenHostPortAsync(uint port)
    {
        // A listener of an earlier test left its socket file behind, as programs do.
        var path = new StateLayout(StateDirectory).HostVsockSocket(port);
        File.Delete(path);
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        socket.Bind(new UnixDomainSocketEndPoint(path));
        socket.Listen(16);
        await WaitUntilAsync(() => Device.IsListening(port), $"a listener for host port {port}");
        return socket;
    }

    public async Task<GuestRun> GuestSendsAsync(uint hostPort, int bytes)
    {
        using var socket = await Device.ConnectFromGuestAsync(hostPort);
        if (socket is null)
        {
            return new GuestRun(Refused: true, "connection reset by the host");
        }

        var sending = Task.Run(async () =>
        {
            await GuestPrograms.SendPatternAsync(socket, bytes);
            socket.Shutdown(SocketShutdown.Send);
        });
        var reply = await VsockStreams.ReceiveToEndAsync(socket);
        await sending;
        return new GuestRun(Refused: false, System.Text.Encoding.ASCII.GetString(reply));
    }

    public async Task<GuestRun> GuestReceivesAsync(uint hostPort, int bytes)
    {
        using var socket = await Device.ConnectFromGuestAsync(hostPort);
        if (socket is null)
        {
            return new GuestRun(Refused: true, "connection reset by the host");
        }

        await socket.SendAsync(System.Text.Encoding.ASCII.GetBytes($"{bytes}\n"));
        var received = await VsockStreams.ReceiveToEndAsync(socket);
        var intact = received.AsSpan().SequenceEqual(GuestPrograms.Pattern(0, received.Length));
        return new GuestRun(Refused: false, intact ? $"received {received.Length} bytes" : "pattern mismatch");
    }

    internal static async Task WaitUntilAsync(Func<bool> condition, string what)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(30);
        while (!condition())
        {
            Assert.True(DateTime.UtcNow < deadline, $"timed out waiting for {what}");
            await Task.Delay(10);
        }
    }
}

[CollectionDefinition(DisableParallelization = true)]
public sealed class DescriptorCountingTests;

/// <summary>
/// The vsock behaviour suite over the stream transport, with socket pairs standing in for the framework's
/// descriptors. Alone in its collection: it counts the test process's descriptors.
/// </summary>
[Collection(typeof(DescriptorCountingTests))]
public sealed class VsockStreamTransportBehaviourTests(StreamTransportWorld world)
    : VsockBehaviourTests<StreamTransportWorld>(world), IClassFixture<StreamTransportWorld>
{
    [Fact]
    public async Task Every_stream_object_is_released_exactly_once()
    {
        using (var socket = World.ConnectGuestPort(GuestPorts.Echo))
        {
            await VsockStreams.SendAndReceiveAllAsync(socket, [1, 2, 3]);
        }

        using (var listener = await World.ListenHostPortAsync(GuestPorts.HostReceiving))
        {
            var serving = Task.Run(async () =>
            {
                using var connection = await listener.AcceptAsync(Cancellation);
                await VsockStreams.ReceiveToEndAsync(connection);
            }, Cancellation);
            Assert.False((await World.GuestSendsAsync(GuestPorts.HostReceiving, 100)).Refused);
            await serving;
        }

        await World.Device.WaitUntilAllReleasedAsync();
        Assert.All(World.Device.Streams, stream => Assert.Equal(1, stream.Releases));
    }
}
