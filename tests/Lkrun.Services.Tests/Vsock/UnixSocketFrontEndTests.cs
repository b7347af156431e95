using System.Net.Sockets;
using Lkrun.Services.Tests.Fakes;
using Lkrun.Services.State;
using Lkrun.Services.Vsock;
using Lkrun.Tests.VsockBehaviour;

namespace Lkrun.Services.Tests.Vsock;

/// <summary>The unix-socket side both transports share: its files, their modes and lifetime, and host connections.</summary>
public sealed class UnixSocketFrontEndTests : IDisposable
{
    private readonly string _directory = Directory.CreateTempSubdirectory("lkrun-vsock-").FullName;

    public void Dispose() => Directory.Delete(_directory, recursive: true);

    private static Socket Connect(string path)
    {
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        socket.Connect(new UnixDomainSocketEndPoint(path));
        return socket;
    }

    private static Socket Listen(string path)
    {
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        socket.Bind(new UnixDomainSocketEndPoint(path));
        socket.Listen(4);
        return socket;
    }

    [Fact]
    public async Task Guest_sockets_are_private_to_the_user_and_removed_on_dispose()
    {
        var frontEnd = UnixSocketFrontEnd.Create(new StateLayout(_directory), [5000, 0xdeadbeef]);
        var paths = new[] { Path.Combine(_directory, "guest.00001388"), Path.Combine(_directory, "guest.deadbeef") };

        Assert.All(paths, path => Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(path)));

        await frontEnd.DisposeAsync();
        Assert.Empty(Directory.GetFileSystemEntries(_directory));
    }

    [Fact]
    public async Task Dispose_after_the_state_directory_went_away_succeeds()
    {
        var directory = Directory.CreateDirectory(Path.Combine(_directory, "state")).FullName;
        var frontEnd = UnixSocketFrontEnd.Create(new StateLayout(directory), [5000]);
        Directory.Delete(directory, recursive: true);

        await frontEnd.DisposeAsync();
    }

    [Fact]
    public async Task A_connection_while_no_transport_serves_is_closed_at_once()
    {
        await using var frontEnd = UnixSocketFrontEnd.Create(new StateLayout(_directory), [5000]);

        using var socket = Connect(new StateLayout(_directory).GuestVsockSocket(5000));

        VsockStreams.AssertEnds(socket);
    }

    [Fact]
    public async Task A_stale_socket_of_an_earlier_run_is_replaced()
    {
        var path = new StateLayout(_directory).GuestVsockSocket(5000);
        SocketPairs.LeaveStaleSocket(path);

        await using var frontEnd = UnixSocketFrontEnd.Create(new StateLayout(_directory), [5000]);

        using var socket = Connect(path);
        VsockStreams.AssertEnds(socket);
    }

    [Fact]
    public void A_socket_another_program_serves_is_reported_in_use()
    {
        var path = new StateLayout(_directory).GuestVsockSocket(5000);
        using var other = Listen(path);

        var error = Assert.Throws<IOException>(() => UnixSocketFrontEnd.Create(new StateLayout(_directory), [5000]));

        Assert.Equal($"vsock: {path}: already in use", error.Message);
        Assert.True(File.Exists(path));
    }

    [Fact]
    public void A_file_that_is_not_a_socket_is_left_alone_and_reported()
    {
        var path = new StateLayout(_directory).GuestVsockSocket(5001);
        File.WriteAllText(path, "mine");

        var error = Assert.Throws<IOException>(() => UnixSocketFrontEnd.Create(new StateLayout(_directory), [5000, 5001]));

        Assert.Equal($"vsock: {path}: exists and is not a socket", error.Message);
        Assert.Equal("mine", File.ReadAllText(path));
        // Nothing half-made: the socket created before the failure is gone too.
        Assert.False(File.Exists(new StateLayout(_directory).GuestVsockSocket(5000)));
    }

    [Fact]
    public void Bad_options_are_refused_with_one_line()
    {
        Assert.Equal("vsock: guest port 5000 is exposed twice",
            Assert.Throws<ArgumentException>(() => UnixSocketFrontEnd.Create(new StateLayout(_directory), [5000, 5001, 5000])).Message);
        var missing = Path.Combine(_directory, "missing");
        Assert.Equal($"vsock: state directory {missing} does not exist",
            Assert.Throws<IOException>(() => UnixSocketFrontEnd.Create(new StateLayout(missing), [5000])).Message);
    }

    [Fact]
    public async Task Host_listeners_are_found_by_their_exact_names()
    {
        await using var frontEnd = UnixSocketFrontEnd.Create(new StateLayout(_directory), []);
        using var listener = Listen(new StateLayout(_directory).HostVsockSocket(0x1770));
        File.WriteAllText(Path.Combine(_directory, "00000002.ffffffff"), "");
        foreach (var name in new[] { "00000002.0000ABCD", "00000002.123", "00000003.00001771", "00000002.00001772.tmp" })
        {
            File.WriteAllText(Path.Combine(_directory, name), "");
        }

        Assert.Equal([0x1770u, 0xffffffffu], frontEnd.FindHostListeners().Order());
    }

    [Fact]
    public async Task Host_connections_reach_a_listener_or_fail_without_waiting()
    {
        await using var frontEnd = UnixSocketFrontEnd.Create(new StateLayout(_directory), []);
        Assert.Null(frontEnd.TryConnectToHost(6000));

        using var listener = Listen(new StateLayout(_directory).HostVsockSocket(6000));
        using var connection = frontEnd.TryConnectToHost(6000);
        Assert.NotNull(connection);
        using var accepted = listener.Accept();

        listener.Dispose();
        SocketPairs.LeaveStaleSocket(new StateLayout(_directory).HostVsockSocket(6000));
        Assert.Null(frontEnd.TryConnectToHost(6000));
    }
}
