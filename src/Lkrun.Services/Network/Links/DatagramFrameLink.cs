using System.Net.Sockets;
using System.Text;
using Lkrun.Services.Interop;
using Lkrun.Services.Network.Packets;

namespace Lkrun.Services.Network.Links;

/// <summary>
/// The link over unix datagram sockets: one Ethernet frame per datagram, nothing else. It ends on lkrun's side in
/// one of two ways:
/// <list type="bullet">
/// <item>a connected socket handed over, one end of a pair whose other end the device has (Virtualization.framework's
/// <c>VZFileHandleNetworkDeviceAttachment</c>, as vfkit and gvproxy use it). Once the device's end is gone the link
/// stays down: nothing can connect to an unnamed socket again.</item>
/// <item>a socket bound at a path, with the device's socket bound at another (QEMU's <c>-netdev dgram</c>). QEMU
/// sends from its path and never connects; lkrun takes datagrams only from that path, and connects to it when the
/// first one arrives. That moment is when QEMU's socket certainly exists (QEMU binds it during start-up, at a time
/// lkrun cannot see without watching the file system), and the guest always speaks first (DHCP) before anything on
/// the network has reason to reach it; frames for the guest before then are dropped, as on an unplugged wire. Once
/// connected, Linux also refuses datagrams from anyone else, and QEMU's sends are no longer held to the receiver's
/// short datagram queue (net.unix.max_dgram_qlen) but to the sender's buffer. Should QEMU's socket go away, lkrun
/// notices at its next send, which fails, and drops back to waiting: a new socket at the path is heard again from
/// then on (before, Linux refuses it, lkrun being connected to the old one). QEMU never binds anew during a run.</item>
/// </list>
/// Both socket buffers are raised as vfkit raises them (1 MiB send, 4 MiB receive), since frames are up to 64 KiB:
/// the system may grant less (Linux caps them at net.core.wmem_max and rmem_max, then doubles them for its own
/// bookkeeping) or more; <see cref="SendBufferSize"/> and <see cref="ReceiveBufferSize"/> say what it granted.
/// A frame the socket cannot take now waits in a bounded queue: on "would block" until the socket is writable, on
/// "no buffer space" (how macOS says the peer's buffer is full, without a poll event for when it empties) for
/// <see cref="NoBufferRetryMilliseconds"/>. Everything here runs on macOS as well as on Linux.
/// </summary>
internal sealed class DatagramFrameLink : IFrameLink
{
    public const int RequestedSendBuffer = 1 << 20;
    public const int RequestedReceiveBuffer = 4 << 20;

    /// <summary>How long a frame waits after "no buffer space" before the next try.</summary>
    public const int NoBufferRetryMilliseconds = 1;

    /// <summary>How many datagrams one turn takes in at most, so that the stack's sockets get their turn.</summary>
    private const int ReceivesPerTurn = 64;

    private readonly Socket _socket;
    private readonly int _fd;
    private readonly string? _path;
    private readonly string? _devicePath;
    private readonly byte[]? _deviceAddress;
    private readonly FrameQueue _queue = new();
    // One byte more than the longest frame, so that a longer datagram shows as too long rather than cut to fit.
    private readonly byte[] _received = new byte[FrameLimits.MaxFrameLength + 1];
    private readonly byte[] _source = new byte[UnixDatagram.AddressBufferLength];
    private int _pollIndex = -1;
    private bool _connected;
    private bool _down;
    private bool _outOfBuffers;
    private long _dropped;

    private DatagramFrameLink(Socket socket, string? path, string? devicePath, bool connected)
    {
        _socket = socket;
        _fd = (int)socket.Handle;
        _path = path;
        _devicePath = devicePath;
        _deviceAddress = devicePath is null ? null : Encoding.UTF8.GetBytes(devicePath);
        _connected = connected;
    }

    /// <summary>Binds <paramref name="path"/>, replacing a socket file left there, for a device bound at <paramref name="devicePath"/>.</summary>
    public static DatagramFrameLink Bind(string path, string devicePath)
    {
        File.Delete(path);
        var socket = new Socket(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified);
        try
        {
            Configure(socket);
            socket.Bind(new UnixDomainSocketEndPoint(path));
            return new DatagramFrameLink(socket, path, devicePath, connected: false);
        }
        catch
        {
            socket.Dispose();
            File.Delete(path);
            throw;
        }
    }

    /// <summary>Takes over <paramref name="handle"/>, a connected datagram socket; it is closed with the link.</summary>
    public static DatagramFrameLink Adopt(SafeSocketHandle handle)
    {
        var socket = new Socket(handle);
        try
        {
            Configure(socket);
            return new DatagramFrameLink(socket, null, null, connected: true);
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    /// <summary>The send buffer the system granted, in bytes as it reports them.</summary>
    public int SendBufferSize => _socket.SendBufferSize;

    /// <summary>The receive buffer the system granted, in bytes as it reports them.</summary>
    public int ReceiveBufferSize => _socket.ReceiveBufferSize;

    /// <summary>Whether frames for the guest go anywhere: a handed-over socket until its peer is gone, a bound one once the device spoke.</summary>
    public bool IsConnected => _connected && !_down;

    public long DroppedFrames => _dropped + _queue.DroppedFrames;

    public int AddTo(PollSet poll)
    {
        if (_down)
        {
            _pollIndex = -1;
            return -1;
        }
        var events = _queue.IsEmpty || _outOfBuffers ? LibC.POLLIN : (short)(LibC.POLLIN | LibC.POLLOUT);
        _pollIndex = poll.Add(_fd, events);
        return _outOfBuffers ? NoBufferRetryMilliseconds : -1;
    }

    public void Serve(PollSet poll, IFrameSink fromGuest)
    {
        var events = poll.ReturnedEvents(_pollIndex);
        if ((events & LibC.POLLOUT) != 0)
        {
            Flush();
        }
        if ((events & (LibC.POLLIN | LibC.POLLERR | LibC.POLLHUP)) != 0)
        {
            Receive(events, fromGuest);
        }
    }

    public void Deliver(ReadOnlySpan<byte> frame)
    {
        if (!IsConnected || frame.Length > FrameLimits.MaxFrameLength)
        {
            _dropped++;
            return;
        }
        // Behind queued frames a frame waits its turn; only into an empty queue does it go straight out, uncopied.
        if (!_queue.IsEmpty || !TrySend(frame, out var dropped) && !dropped)
        {
            _queue.TryQueue(frame);
        }
    }

    public void Flush()
    {
        _outOfBuffers = false;
        while (IsConnected && !_queue.IsEmpty)
        {
            if (!TrySend(_queue.FirstFrame, out var dropped) && !dropped)
            {
                return;
            }
            // Sent, or dropped for good; losing the peer has emptied the queue already.
            if (!_queue.IsEmpty)
            {
                _queue.RemoveFirstFrame();
            }
        }
    }

    public void Dispose()
    {
        _socket.Dispose();
        if (_path is not null)
        {
            File.Delete(_path);
            // QEMU does not remove its socket file when it quits.
            File.Delete(_devicePath!);
        }
    }

    private static void Configure(Socket socket)
    {
        socket.Blocking = false;
        socket.SendBufferSize = RequestedSendBuffer;
        socket.ReceiveBufferSize = RequestedReceiveBuffer;
    }

    /// <summary>
    /// Sends one frame: true when it went out; false with <paramref name="dropped"/> set when it is dropped for good
    /// (and counted), false with <paramref name="dropped"/> clear when it is to wait and go again.
    /// </summary>
    private bool TrySend(ReadOnlySpan<byte> frame, out bool dropped)
    {
        var result = UnixDatagram.Send(_fd, frame);
        dropped = false;
        if (result >= 0)
        {
            return true;
        }
        var errno = -result;
        if (errno == UnixDatagram.EAGAIN)
        {
            return false;
        }
        if (errno == UnixDatagram.ENOBUFS)
        {
            _outOfBuffers = true;
            return false;
        }
        dropped = true;
        _dropped++;
        if (errno != UnixDatagram.EMSGSIZE)
        {
            // ECONNREFUSED, ENOTCONN, ECONNRESET, EPIPE and the like: the device's socket is gone.
            LosePeer();
        }
        return false;
    }

    private void Receive(short events, IFrameSink fromGuest)
    {
        for (var i = 0; i < ReceivesPerTurn && !_down; i++)
        {
            var received = UnixDatagram.Receive(_fd, _received, _source, out var sourceLength);
            if (received == -UnixDatagram.EAGAIN)
            {
                return;
            }
            if (received < 0 || received == 0 && (events & LibC.POLLHUP) != 0)
            {
                // An error the socket reports once (the peer went away), or, on macOS, the end of a pair whose
                // other end closed, which stays readable: stop reading until the device comes back, if it can.
                LosePeer(endOfStream: received == 0);
                return;
            }
            if (_deviceAddress is not null)
            {
                if (!UnixDatagram.IsFrom(_source.AsSpan(0, sourceLength), _deviceAddress))
                {
                    _dropped++;
                    continue;
                }
                if (!_connected)
                {
                    Connect();
                }
            }
            if (received < EthernetFrame.HeaderLength || received > FrameLimits.MaxFrameLength)
            {
                _dropped++;
                continue;
            }
            fromGuest.Deliver(_received.AsSpan(0, received));
        }
    }

    private void Connect()
    {
        try
        {
            _socket.Connect(new UnixDomainSocketEndPoint(_devicePath!));
            _connected = true;
        }
        catch (SocketException)
        {
            // The device's socket went away again since it sent; its next datagram tries again.
        }
    }

    private void LosePeer(bool endOfStream = false)
    {
        _connected = false;
        _queue.Clear();
        _outOfBuffers = false;
        // A handed-over socket cannot get a new peer, and a socket at its end of stream reads nothing more.
        _down = _path is null || endOfStream;
    }
}
