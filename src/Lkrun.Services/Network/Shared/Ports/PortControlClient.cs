using System.Net.Sockets;
using System.Text;

namespace Lkrun.Services.Network.Shared.Ports;

/// <summary>
/// A client of a shared network's port socket (<see cref="PortControl"/>): one connection, requests answered in
/// turn. A socket that does not answer within <see cref="Timeout"/> (VPNKit's own port socket speaks 9P, and waits
/// for a 9P message), or answers with something else, is a <see cref="NetworkException"/> naming it.
/// </summary>
public sealed class PortControlClient : IDisposable
{
    public static readonly TimeSpan Timeout = TimeSpan.FromSeconds(10);

    private readonly string _path;
    private readonly Socket _socket;
    private readonly byte[] _buffer = new byte[64 * 1024];
    private int _filled;

    private PortControlClient(string path, Socket socket)
    {
        _path = path;
        _socket = socket;
    }

    public static PortControlClient Connect(string path)
    {
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            socket.ReceiveTimeout = socket.SendTimeout = (int)Timeout.TotalMilliseconds;
            socket.Connect(new UnixDomainSocketEndPoint(path));
            return new PortControlClient(path, socket);
        }
        catch (SocketException e)
        {
            socket.Dispose();
            throw NetworkException.Host($"cannot connect to the network's port socket {path}: {e.Message}");
        }
    }

    /// <summary>Sends <paramref name="request"/> and returns the answer; an answer with an error is returned, not thrown.</summary>
    public PortResponse Send(PortRequest request)
    {
        try
        {
            _socket.Send(Encoding.UTF8.GetBytes(PortControl.Encode(request) + "\n"));
            while (true)
            {
                var end = _buffer.AsSpan(0, _filled).IndexOf((byte)'\n');
                if (end >= 0)
                {
                    var response = PortControl.DecodeResponse(_buffer.AsSpan(0, end));
                    _buffer.AsSpan(end + 1, _filled - end - 1).CopyTo(_buffer);
                    _filled -= end + 1;
                    return response;
                }
                if (_filled == _buffer.Length)
                {
                    throw new PortControlException("the answer is too long");
                }
                var read = _socket.Receive(_buffer.AsSpan(_filled));
                if (read == 0)
                {
                    throw new PortControlException("it closed the connection without an answer");
                }
                _filled += read;
            }
        }
        catch (SocketException e) when (e.SocketErrorCode is SocketError.TimedOut or SocketError.WouldBlock)
        {
            throw NetworkException.Host($"the port socket {_path} did not answer within {Timeout.TotalSeconds:0} s (is it lkrun's network service?)");
        }
        catch (SocketException e)
        {
            throw NetworkException.Host($"the port socket {_path} failed: {e.Message}");
        }
        catch (PortControlException e)
        {
            throw NetworkException.Host($"the port socket {_path} does not speak lkrun's port protocol: {e.Message}");
        }
    }

    public void Dispose() => _socket.Dispose();
}
