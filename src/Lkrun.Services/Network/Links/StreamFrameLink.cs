using System.Net.Sockets;
using Lkrun.Services.Interop;

namespace Lkrun.Services.Network.Links;

/// <summary>
/// The link over QEMU's <c>-netdev stream</c>: lkrun listens on a unix socket, QEMU connects, and frames go both
/// ways with their lengths in front (<see cref="FrameStream"/>). One connection at a time; when QEMU closes it
/// (it quit, or reset its network device) the link waits for the next. Frames for the guest are queued and
/// written in batches, so a burst costs few system calls.
/// </summary>
internal sealed class StreamFrameLink : IFrameLink
{
    /// <summary>How many reads from QEMU one turn takes at most, so that the stack's sockets get their turn.</summary>
    private const int ReadsPerTurn = 16;

    /// <summary>Queued frames are written out once this many bytes wait, rather than at the end of the turn.</summary>
    private const int FlushThreshold = 256 * 1024;

    private readonly string _path;
    private readonly Socket _listener;
    private readonly FrameStreamReader _reader = new();
    private readonly FrameQueue _queue = new();
    private Socket? _connection;
    private int _pollIndex = -1;
    private long _droppedWithoutConnection;

    private StreamFrameLink(string path, Socket listener)
    {
        _path = path;
        _listener = listener;
    }

    /// <summary>Listens on <paramref name="path"/>, replacing a socket file left there.</summary>
    public static StreamFrameLink Listen(string path)
    {
        File.Delete(path);
        var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            listener.Bind(new UnixDomainSocketEndPoint(path));
            listener.Listen(1);
            listener.Blocking = false;
            return new StreamFrameLink(path, listener);
        }
        catch
        {
            listener.Dispose();
            File.Delete(path);
            throw;
        }
    }

    public long DroppedFrames => _reader.DroppedFrames + _queue.DroppedFrames + _droppedWithoutConnection;

    public int AddTo(PollSet poll)
    {
        var events = _connection is null ? LibC.POLLIN : (short)(LibC.POLLIN | (_queue.IsEmpty ? 0 : LibC.POLLOUT));
        _pollIndex = poll.Add((int)(_connection ?? _listener).Handle, events);
        return -1;
    }

    public void Serve(PollSet poll, IFrameSink fromGuest)
    {
        var events = poll.ReturnedEvents(_pollIndex);
        if (events == 0)
        {
            return;
        }
        if (_connection is null)
        {
            Accept();
            return;
        }
        if ((events & LibC.POLLOUT) != 0)
        {
            Flush();
        }
        if ((events & (LibC.POLLIN | LibC.POLLHUP | LibC.POLLERR)) != 0)
        {
            Read(fromGuest);
        }
    }

    public void Deliver(ReadOnlySpan<byte> frame)
    {
        if (_connection is null)
        {
            _droppedWithoutConnection++;
            return;
        }
        if (_queue.Pending.Length >= FlushThreshold)
        {
            Flush();
        }
        _queue.TryQueue(frame);
    }

    public void Flush()
    {
        while (_connection is { } connection && !_queue.IsEmpty)
        {
            var sent = connection.Send(_queue.Pending, SocketFlags.None, out var error);
            if (error == SocketError.WouldBlock)
            {
                return;
            }
            if (error != SocketError.Success)
            {
                Disconnect();
                return;
            }
            _queue.Consumed(sent);
        }
    }

    public void Dispose()
    {
        _connection?.Dispose();
        _listener.Dispose();
        File.Delete(_path);
    }

    private void Accept()
    {
        try
        {
            var connection = _listener.Accept();
            connection.Blocking = false;
            _connection = connection;
            _reader.Reset();
            _queue.Clear();
        }
        catch (SocketException e) when (e.SocketErrorCode is SocketError.WouldBlock or SocketError.ConnectionAborted)
        {
            // QEMU gave up on the connection before it was taken; it is the only one who connects.
        }
    }

    private void Read(IFrameSink fromGuest)
    {
        for (var i = 0; i < ReadsPerTurn && _connection is { } connection; i++)
        {
            var read = connection.Receive(_reader.FreeSpace(), SocketFlags.None, out var error);
            if (error == SocketError.WouldBlock)
            {
                return;
            }
            if (error != SocketError.Success || read == 0)
            {
                Disconnect();
                return;
            }
            _reader.Received(read);
            while (_reader.TryReadFrame(out var frame))
            {
                fromGuest.Deliver(frame);
            }
        }
    }

    private void Disconnect()
    {
        _connection?.Dispose();
        _connection = null;
        _reader.Reset();
        _queue.Clear();
    }
}
