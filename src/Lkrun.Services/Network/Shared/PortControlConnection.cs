using System.Net;
using System.Net.Sockets;
using System.Text;
using Lkrun.Services.Interop;
using Lkrun.Services.Network.Shared.Ports;

namespace Lkrun.Services.Network.Shared;

/// <summary>
/// One client of the shared network's port socket, on the service's side: it reads request lines
/// (<see cref="PortControl"/>), has <paramref name="handle"/> answer each, and writes the answers back in order. A
/// line that is not a request, or is longer than <see cref="PortControl.MaxLineLength"/>, is answered with an
/// error and ends the connection (reported once through <paramref name="log"/>): once the answer is out the service
/// shuts its side down and reads what the client still sends until it closes too, so that the answer is not lost
/// to a reset. A client that sends nothing whole for <see cref="IdleTimeout"/> is closed. The service's thread
/// drives it.
/// </summary>
internal sealed class PortControlConnection(Socket socket, int number, Func<PortRequest, PortResponse> handle, Action<string> log) : IDisposable
{
    public static readonly TimeSpan IdleTimeout = TimeSpan.FromSeconds(60);

    private readonly byte[] _line = new byte[PortControl.MaxLineLength + 1];
    private readonly List<byte> _output = [];
    private int _filled;
    private int _pollIndex = -1;
    private bool _closing;
    private bool _shutDown;
    private bool _peerDone;
    private long _deadline = NewDeadline();

    public bool IsClosed { get; private set; }

    public long Deadline => _deadline;

    public void AddTo(PollSet poll)
    {
        _pollIndex = IsClosed ? -1 : poll.Add((int)socket.Handle, _output.Count > 0 ? (short)(LibC.POLLIN | LibC.POLLOUT) : LibC.POLLIN);
    }

    public void Serve(PollSet poll)
    {
        var events = poll.ReturnedEvents(_pollIndex);
        if ((events & (LibC.POLLIN | LibC.POLLHUP | LibC.POLLERR)) != 0)
        {
            Read();
        }
        if ((events & LibC.POLLOUT) != 0 || _output.Count > 0)
        {
            Flush();
        }
    }

    public void CheckDeadline(long now)
    {
        if (!IsClosed && now >= _deadline)
        {
            Close(_closing ? null : $"port client {number} sent no whole request for {IdleTimeout.TotalSeconds:0} s; closed it");
        }
    }

    public void Dispose()
    {
        IsClosed = true;
        socket.Dispose();
    }

    private void Read()
    {
        while (!IsClosed && !_peerDone)
        {
            // After a refusal what comes in is read only to notice the end of it.
            var read = socket.Receive(_closing ? _line : _line.AsSpan(_filled), SocketFlags.None, out var error);
            if (error == SocketError.WouldBlock)
            {
                return;
            }
            if (error != SocketError.Success || read == 0)
            {
                if (!_closing && _filled > 0)
                {
                    log($"port client {number} closed the connection in the middle of a request");
                }
                _peerDone = true;
                if (error != SocketError.Success || _output.Count == 0)
                {
                    Close(null);
                }
                return;
            }
            if (_closing)
            {
                continue;
            }
            _filled += read;
            int end;
            while (!_closing && (end = _line.AsSpan(0, _filled).IndexOf((byte)'\n')) >= 0)
            {
                Answer(_line.AsSpan(0, end));
                _line.AsSpan(end + 1, _filled - end - 1).CopyTo(_line);
                _filled -= end + 1;
                _deadline = NewDeadline();
            }
            if (!_closing && _filled > PortControl.MaxLineLength)
            {
                Refuse($"a request longer than {PortControl.MaxLineLength} bytes");
            }
        }
    }

    private void Answer(ReadOnlySpan<byte> line)
    {
        PortRequest request;
        try
        {
            request = PortControl.DecodeRequest(line);
        }
        catch (PortControlException e)
        {
            Refuse(e.Message);
            return;
        }
        Queue(handle(request));
    }

    private void Refuse(string why)
    {
        log($"port client {number}: {why}; closed it");
        Queue(new PortResponse(why));
        _closing = true;
        _deadline = NewDeadline();
    }

    private void Queue(PortResponse response)
    {
        _output.AddRange(Encoding.UTF8.GetBytes(PortControl.EncodeResponse(response) + "\n"));
    }

    private void Flush()
    {
        while (!IsClosed && _output.Count > 0)
        {
            var pending = _output.ToArray();
            var sent = socket.Send(pending, SocketFlags.None, out var error);
            if (error == SocketError.WouldBlock)
            {
                return;
            }
            if (error != SocketError.Success)
            {
                Close(null);
                return;
            }
            _output.RemoveRange(0, sent);
        }
        if (IsClosed || _output.Count > 0)
        {
            return;
        }
        if (_peerDone)
        {
            Close(null);
        }
        else if (_closing && !_shutDown)
        {
            _shutDown = true;
            try
            {
                socket.Shutdown(SocketShutdown.Send);
            }
            catch (SocketException)
            {
                // The client is gone already.
                Close(null);
            }
        }
    }

    private void Close(string? reason)
    {
        if (IsClosed)
        {
            return;
        }
        if (reason is not null)
        {
            log(reason);
        }
        Dispose();
    }

    private static long NewDeadline() => Environment.TickCount64 + (long)IdleTimeout.TotalMilliseconds;
}
