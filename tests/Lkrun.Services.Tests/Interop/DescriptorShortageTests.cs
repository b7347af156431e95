using System.Net.Sockets;
using Lkrun.Services.Interop;

namespace Lkrun.Services.Tests.Interop;

/// <summary>
/// Accepting while out of descriptors, with an accept that fails as accept(2) does under EMFILE while real
/// connections wait on a real listener (lowering the test process's own limit would starve the tests beside it).
/// </summary>
public sealed class DescriptorShortageTests : IDisposable
{
    private static readonly SocketException OutOfDescriptors = new((int)SocketError.TooManyOpenSockets);

    private readonly string _directory = Directory.CreateTempSubdirectory("lkrun-fds-").FullName;
    private readonly DescriptorShortage _shortage = new();
    private readonly List<string> _log = [];
    private readonly Socket _listener;

    public DescriptorShortageTests()
    {
        _listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        _listener.Bind(new UnixDomainSocketEndPoint(SocketPath));
        _listener.Listen(16);
        _shortage.Reserve();
    }

    private string SocketPath => Path.Combine(_directory, "listener");

    public void Dispose()
    {
        _listener.Dispose();
        Directory.Delete(_directory, recursive: true);
    }

    private Socket Connect()
    {
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        socket.Connect(new UnixDomainSocketEndPoint(SocketPath));
        return socket;
    }

    private void Log(string line)
    {
        lock (_log)
        {
            _log.Add(line);
        }
    }

    [Fact]
    public async Task Connections_waiting_while_out_of_descriptors_are_refused_and_the_next_one_is_accepted()
    {
        using var first = Connect();
        using var second = Connect();
        var failures = 2;
        ValueTask<Socket> Accept(CancellationToken token) =>
            Interlocked.Decrement(ref failures) >= 0 ? ValueTask.FromException<Socket>(OutOfDescriptors) : _listener.AcceptAsync(token);

        var accepting = _shortage.AcceptAsync(_listener, Accept, Log, complain: null, TestContext.Current.CancellationToken);

        // Both waiting peers read end of stream at once, rather than wait in the backlog.
        Assert.Equal(0, await first.ReceiveAsync(new byte[1], SocketFlags.None, TestContext.Current.CancellationToken));
        Assert.Equal(0, await second.ReceiveAsync(new byte[1], SocketFlags.None, TestContext.Current.CancellationToken));
        Assert.False(accepting.IsCompleted);
        using var third = Connect();
        using var accepted = await accepting;
        third.Send("x"u8);
        Assert.Equal(1, accepted.Receive(new byte[1]));
        Assert.Equal(["out of file descriptors (the limit of ulimit -n): new connections are refused until some close"], _log);
    }

    [Fact]
    public async Task Out_of_descriptors_with_nobody_waiting_the_loop_rests_instead_of_spinning()
    {
        var calls = 0;
        ValueTask<Socket> Accept(CancellationToken token)
        {
            Interlocked.Increment(ref calls);
            return ValueTask.FromException<Socket>(OutOfDescriptors);
        }

        using var stop = CancellationTokenSource.CreateLinkedTokenSource(TestContext.Current.CancellationToken);
        var accepting = _shortage.AcceptAsync(_listener, Accept, Log, complain: null, stop.Token);
        await Task.Delay(TimeSpan.FromSeconds(1), TestContext.Current.CancellationToken);
        await stop.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => accepting);

        // A rest of 100 ms between tries: about ten in a second; a spinning loop would make millions.
        Assert.InRange(calls, 1, 100);
        Assert.Single(_log);
    }

    [Fact]
    public async Task Other_accept_errors_are_complained_about_and_retried()
    {
        var failed = 0;
        var complaints = new List<SocketError>();
        ValueTask<Socket> Accept(CancellationToken token) =>
            Interlocked.Exchange(ref failed, 1) == 0 ? ValueTask.FromException<Socket>(new SocketException((int)SocketError.NoBufferSpaceAvailable)) : _listener.AcceptAsync(token);

        using var client = Connect();
        using var accepted = await _shortage.AcceptAsync(_listener, Accept, Log, e => complaints.Add(e.SocketErrorCode), TestContext.Current.CancellationToken);

        Assert.Equal([SocketError.NoBufferSpaceAvailable], complaints);
        Assert.Empty(_log);
    }

    [Fact]
    public void A_lasting_shortage_is_reported_once()
    {
        // A service without a log does not use up the one line.
        _shortage.Report(null);
        for (var i = 0; i < 1000; i++)
        {
            _shortage.Report(Log);
        }

        Assert.Single(_log);
    }

    [Fact]
    public void With_descriptors_to_spare_one_can_be_opened()
    {
        Assert.True(_shortage.CanOpenOne());
    }

    [Fact]
    public void Refusing_with_nobody_waiting_refuses_nothing_and_keeps_the_reserve()
    {
        Assert.False(_shortage.RefuseWaiting(_listener));
        using var client = Connect();
        Assert.True(_shortage.RefuseWaiting(_listener));
        Assert.Equal(0, client.Receive(new byte[1]));
        Assert.False(_shortage.RefuseWaiting(_listener));
    }
}
