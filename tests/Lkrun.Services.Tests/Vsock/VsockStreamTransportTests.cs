using System.Net.Sockets;
using Lkrun.Services.Faults;
using Lkrun.Services.Tests.Fakes;
using Lkrun.Services.State;
using Lkrun.Services.Vsock;
using Lkrun.Tests.VsockBehaviour;

namespace Lkrun.Services.Tests.Vsock;

/// <summary>
/// What only the stream transport has: the framework's ways of answering (late, with an error, never), listeners
/// that follow the 00000002.PPPPPPPP socket files, the release of every stream object, stopping and failing.
/// </summary>
public sealed class VsockStreamTransportTests : IAsyncLifetime
{
    private const uint LatePort = 5010;
    private const uint FailingPort = 5011;
    private const uint BrokenPort = 5012;
    private const uint HostPort = 6100;

    private readonly string _directory = Directory.CreateTempSubdirectory("lkrun-vsock-").FullName;
    private readonly FakeGuestSocketDevice _device = new();
    private readonly List<Socket> _sockets = [];
    private readonly TaskCompletionSource _lateAnswer = new();
    private UnixSocketFrontEnd? _frontEnd;
    private VsockStreamTransport? _transport;

    private static CancellationToken Cancellation => TestContext.Current.CancellationToken;

    private VsockStreamTransport Transport => _transport!;

    public ValueTask InitializeAsync()
    {
        _device.ServeEcho(GuestPorts.Echo);
        _device.ServeEcho(LatePort, _lateAnswer.Task);
        _device.FailConnects(FailingPort);
        _device.BreakConnects(BrokenPort);
        _frontEnd = UnixSocketFrontEnd.Create(new StateLayout(_directory), [GuestPorts.Echo, LatePort, FailingPort, BrokenPort]);
        return ValueTask.CompletedTask;
    }

    public async ValueTask DisposeAsync()
    {
        _lateAnswer.TrySetResult();
        foreach (var socket in _sockets)
        {
            socket.Dispose();
        }

        if (_transport is not null)
        {
            await _transport.DisposeAsync();
        }

        await _frontEnd!.DisposeAsync();
        await _device.DisposeAsync();
        Directory.Delete(_directory, recursive: true);
    }

    private void Start(StreamTransportOptions? options = null) =>
        _transport = VsockStreamTransport.Start(_frontEnd!, _device, options ?? StreamTransportWorld.ShortTimings);

    private Socket ConnectGuestPort(uint port)
    {
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        _sockets.Add(socket);
        socket.Connect(new UnixDomainSocketEndPoint(new StateLayout(_directory).GuestVsockSocket(port)));
        return socket;
    }

    private Socket ListenHostPort(uint port)
    {
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        _sockets.Add(socket);
        socket.Bind(new UnixDomainSocketEndPoint(new StateLayout(_directory).HostVsockSocket(port)));
        socket.Listen(16);
        return socket;
    }

    [Fact]
    public async Task A_stream_the_guest_hands_over_after_the_timeout_is_released_and_the_host_connection_closed()
    {
        Start();
        var host = ConnectGuestPort(LatePort);
        VsockStreams.AssertEnds(host);

        _lateAnswer.SetResult();
        await StreamTransportWorld.WaitUntilAsync(() => _device.Streams.Count == 1, "the late answer");
        await _device.WaitUntilAllReleasedAsync();

        Assert.Equal(1, Assert.Single(_device.Streams).Releases);
        Assert.Equal(0, Transport.StreamCount);
    }

    [Fact]
    public void A_connect_the_framework_fails_closes_the_host_connection_without_waiting_for_the_timeout()
    {
        // Far longer than AssertEnds waits: only the error can end the connection in time.
        Start(StreamTransportWorld.ShortTimings with { ConnectTimeout = TimeSpan.FromHours(1) });

        VsockStreams.AssertEnds(ConnectGuestPort(FailingPort));
        Assert.Empty(_device.Streams);
    }

    [Fact]
    public async Task Listeners_follow_the_host_socket_files()
    {
        var early = ListenHostPort(HostPort);
        Start();
        // Present at start: listened on before Start returns.
        Assert.True(_device.IsListening(HostPort));

        // .NET removes the socket file of a listener it bound when it closes it.
        early.Dispose();
        await StreamTransportWorld.WaitUntilAsync(() => !_device.IsListening(HostPort), "the listener to go");
        Assert.Null(await _device.ConnectFromGuestAsync(HostPort));

        using var late = ListenHostPort(HostPort + 1);
        await StreamTransportWorld.WaitUntilAsync(() => _device.IsListening(HostPort + 1), "the new listener");
        using var guest = await _device.ConnectFromGuestAsync(HostPort + 1);
        Assert.NotNull(guest);
        using var accepted = await late.AcceptAsync(Cancellation);
        await accepted.SendAsync("hello"u8.ToArray(), Cancellation);
        accepted.Shutdown(SocketShutdown.Send);
        Assert.Equal("hello"u8.ToArray(), await VsockStreams.ReceiveToEndAsync(guest));
    }

    [Fact]
    public async Task A_socket_file_nobody_serves_refuses_the_guest_and_releases_the_stream()
    {
        SocketPairs.LeaveStaleSocket(new StateLayout(_directory).HostVsockSocket(HostPort));
        Start();
        Assert.True(_device.IsListening(HostPort));

        Assert.Null(await _device.ConnectFromGuestAsync(HostPort));

        Assert.Equal(1, Assert.Single(_device.Streams).Releases);
        Assert.Equal(0, Transport.StreamCount);
    }

    [Fact]
    public async Task Dispose_ends_every_stream_releases_it_and_stops_listening()
    {
        using var listener = ListenHostPort(HostPort);
        Start();
        var host = ConnectGuestPort(GuestPorts.Echo);
        await host.SendAsync("x"u8.ToArray(), Cancellation);
        Assert.Equal(1, await host.ReceiveAsync(new byte[1], Cancellation));
        using var guest = await _device.ConnectFromGuestAsync(HostPort);
        Assert.NotNull(guest);
        using var accepted = await listener.AcceptAsync(Cancellation);

        await Transport.DisposeAsync();

        await Transport.Completion;
        Assert.Equal(0, Transport.StreamCount);
        Assert.All(_device.Streams, stream => Assert.Equal(1, stream.Releases));
        Assert.False(_device.IsListening(HostPort));
        VsockStreams.AssertEnds(host);
        VsockStreams.AssertEnds(accepted);
        VsockStreams.AssertEnds(guest);
        // The front end outlives its transport and closes what arrives now.
        VsockStreams.AssertEnds(ConnectGuestPort(GuestPorts.Echo));
    }

    [Fact]
    public async Task An_injected_fault_fails_the_transport_and_stops_it()
    {
        using var listener = ListenHostPort(HostPort);
        Start(StreamTransportWorld.ShortTimings with { FaultDelay = TimeSpan.FromMilliseconds(100) });
        Assert.True(_device.IsListening(HostPort));

        var failure = await Assert.ThrowsAsync<IOException>(() => Transport.Completion);

        Assert.Equal("the vsock device stopped: fault injected by LKRUN_FAULT into vsock", failure.Message);
        Assert.IsType<InjectedFaultException>(failure.InnerException);
        Assert.False(_device.IsListening(HostPort));
        VsockStreams.AssertEnds(ConnectGuestPort(GuestPorts.Echo));
    }

    [Fact]
    public async Task An_engine_that_throws_fails_the_transport_and_says_why()
    {
        Start();

        VsockStreams.AssertEnds(ConnectGuestPort(BrokenPort));

        var failure = await Assert.ThrowsAsync<IOException>(() => Transport.Completion);
        Assert.Equal($"the vsock device stopped: the engine cannot connect to guest port {BrokenPort}", failure.Message);
    }
}
