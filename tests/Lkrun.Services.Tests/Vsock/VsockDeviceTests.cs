using System.Net.Sockets;
using Lkrun.Services.Faults;
using Lkrun.Services.State;
using Lkrun.Services.Vsock;
using Lkrun.Tests.VsockBehaviour;

namespace Lkrun.Services.Tests.Vsock;

/// <summary>
/// The vhost-user device as a transport, without a front-end connected to its vhost-user socket (so without a
/// guest driver): host connections handed over from the front end's accept loops, its lifetime and its failure.
/// The device with QEMU and a guest is in the integration tests.
/// </summary>
public sealed class VsockDeviceTests : IAsyncLifetime
{
    private readonly string _directory = Directory.CreateTempSubdirectory("lkrun-vsock-").FullName;
    private UnixSocketFrontEnd? _frontEnd;

    private string VhostUserSocket => Path.Combine(_directory, "vsock.sock");

    private UnixSocketFrontEnd FrontEnd => _frontEnd!;

    public ValueTask InitializeAsync()
    {
        _frontEnd = UnixSocketFrontEnd.Create(new StateLayout(_directory), [5000]);
        return ValueTask.CompletedTask;
    }

    public async ValueTask DisposeAsync()
    {
        await FrontEnd.DisposeAsync();
        Directory.Delete(_directory, recursive: true);
    }

    private Socket ConnectGuestPort()
    {
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        socket.Connect(new UnixDomainSocketEndPoint(new StateLayout(_directory).GuestVsockSocket(5000)));
        return socket;
    }

    [Fact]
    public async Task Host_connections_reach_the_device_loop_which_closes_them_while_no_driver_runs()
    {
        await using var device = VsockDevice.Start(FrontEnd, VhostUserSocket, 3, faultDelay: null, log: null);

        for (var i = 0; i < 3; i++)
        {
            using var socket = ConnectGuestPort();
            VsockStreams.AssertEnds(socket);
        }

        Assert.False(device.Completion.IsCompleted);
    }

    [Fact]
    public async Task Dispose_stops_the_device_and_removes_its_socket_but_leaves_the_front_end()
    {
        var device = VsockDevice.Start(FrontEnd, VhostUserSocket, 3, faultDelay: null, log: null);
        Assert.True(File.Exists(VhostUserSocket));

        await device.DisposeAsync();

        await device.Completion;
        Assert.False(File.Exists(VhostUserSocket));
        Assert.True(File.Exists(new StateLayout(_directory).GuestVsockSocket(5000)));
        using var socket = ConnectGuestPort();
        VsockStreams.AssertEnds(socket);
    }

    [Fact]
    public async Task An_injected_fault_fails_the_device_and_stops_it()
    {
        await using var device = VsockDevice.Start(FrontEnd, VhostUserSocket, 3, faultDelay: TimeSpan.FromMilliseconds(100), log: null);

        var failure = await Assert.ThrowsAsync<IOException>(() => device.Completion);

        Assert.Equal("the vsock device stopped: fault injected by LKRUN_FAULT into vsock", failure.Message);
        Assert.IsType<InjectedFaultException>(failure.InnerException);
        Assert.False(File.Exists(VhostUserSocket));
        using var socket = ConnectGuestPort();
        VsockStreams.AssertEnds(socket);
    }

    [Fact]
    public void Reserved_guest_cids_are_refused()
    {
        foreach (var cid in new[] { 0u, 1u, 2u, uint.MaxValue })
        {
            Assert.Equal($"vsock: guest CID {cid} is reserved",
                Assert.Throws<ArgumentException>(() => VsockDevice.Start(FrontEnd, VhostUserSocket, cid)).Message);
        }
    }

    [Fact]
    public async Task A_front_end_serves_one_transport_at_a_time()
    {
        await using var device = VsockDevice.Start(FrontEnd, VhostUserSocket, 3, faultDelay: null, log: null);

        Assert.Throws<InvalidOperationException>(() => VsockDevice.Start(FrontEnd, Path.Combine(_directory, "second.sock"), 3, faultDelay: null, log: null));
    }
}
