using System.Net;
using System.Net.Sockets;
using Lkrun.Services.Interop;
using Lkrun.Services.Network.Leases;
using Lkrun.Services.Network.Links;
using Lkrun.Services.Network.Packets;
using Lkrun.Services.Network.Shared.Vpnkit;

namespace Lkrun.Services.Network.Shared;

/// <summary>Where a connection on the ethernet socket is in VPNKit's protocol.</summary>
internal enum VpnkitConnectionState
{
    /// <summary>Accepted; the client's init message is due.</summary>
    AwaitingInit,

    /// <summary>Init messages exchanged; the client's command is due.</summary>
    AwaitingCommand,

    /// <summary>The interface is granted: frames flow both ways through the switch.</summary>
    Attached,

    /// <summary>
    /// Refused: the last bytes (an init or a disconnect) go out, the service shuts its side down, and the connection
    /// closes once the client has closed its side too (or the handshake's time is up), so the reason is not lost to
    /// a reset.
    /// </summary>
    Refusing,

    /// <summary>Gone; the service detaches it.</summary>
    Closed,
}

/// <summary>
/// One client of the shared network's ethernet socket, on the service's side: it takes the client through VPNKit's
/// handshake (<see cref="VpnkitProtocol"/>), asking <paramref name="attach"/> for the interface, then is the
/// client's port on the switch. The service's thread drives it like a frame link (<see cref="AddTo"/>,
/// <see cref="Serve"/>, <see cref="Flush"/>). Whatever the client sends, it costs at most this connection:
/// malformed handshakes close it, frames of impossible lengths are skipped, and a client that does not read has
/// frames for it dropped once its queue is full. Each kind of trouble is reported once, through
/// <paramref name="log"/>.
/// </summary>
internal sealed class VpnkitConnection(
    Socket socket, int number, Func<VpnkitConnection, VpnkitCommand, VpnkitResponse> attach, EthernetSwitch network, Action<string> log)
    : ISwitchPort, IDisposable
{
    /// <summary>How long a client may take over its handshake before it is closed.</summary>
    public static readonly TimeSpan HandshakeTimeout = TimeSpan.FromSeconds(10);

    private const int ReadsPerTurn = 16;
    private const int FlushThreshold = 256 * 1024;

    private readonly long _handshakeDeadline = Environment.TickCount64 + (long)HandshakeTimeout.TotalMilliseconds;
    private readonly byte[] _handshake = new byte[Math.Max(VpnkitProtocol.InitLength, VpnkitProtocol.CommandLength)];
    private readonly FrameStreamReader _reader = new(stream: FrameStream.Vpnkit);
    private readonly FrameQueue _queue = new(stream: FrameStream.Vpnkit);
    private readonly HashSet<string> _reported = [];
    private int _handshakeFilled;
    private byte[] _control = [];
    private int _controlSent;
    private int _pollIndex = -1;
    private bool _shutDown;

    public VpnkitConnectionState State { get; private set; } = VpnkitConnectionState.AwaitingInit;

    /// <summary>How the log names this client: by number until attached, then by its UUID and address too.</summary>
    public string Name => Uuid is { } uuid ? $"VM {uuid} ({Address})" : $"client {number}";

    public Guid? Uuid { get; private set; }

    public MacAddress Mac { get; private set; }

    public IPAddress? Address { get; private set; }

    public HeldLease? Lease { get; private set; }

    public bool TakesUnknownUnicast => true;

    /// <summary>The moment the handshake (or a refusal's last bytes) must be done by, while it is not.</summary>
    public long? Deadline =>
        State is VpnkitConnectionState.AwaitingInit or VpnkitConnectionState.AwaitingCommand or VpnkitConnectionState.Refusing ? _handshakeDeadline : null;

    /// <summary>Called by <paramref name="attach"/> when it grants the interface.</summary>
    public void Granted(Guid uuid, MacAddress mac, IPAddress address, HeldLease lease)
    {
        Uuid = uuid;
        Mac = mac;
        Address = address;
        Lease = lease;
    }

    public void AddTo(PollSet poll)
    {
        if (State == VpnkitConnectionState.Closed)
        {
            _pollIndex = -1;
            return;
        }
        var events = HasOutput ? (short)(LibC.POLLIN | LibC.POLLOUT) : LibC.POLLIN;
        _pollIndex = poll.Add((int)socket.Handle, events);
    }

    public void Serve(PollSet poll)
    {
        var events = poll.ReturnedEvents(_pollIndex);
        if ((events & LibC.POLLOUT) != 0)
        {
            Flush();
        }
        if ((events & (LibC.POLLIN | LibC.POLLHUP | LibC.POLLERR)) != 0)
        {
            Read();
        }
    }

    /// <summary>Closes a client whose handshake has run out of time.</summary>
    public void CheckDeadline(long now)
    {
        if (Deadline is { } due && now >= due)
        {
            Close(State == VpnkitConnectionState.Refusing ? "" : $"{Name} did not finish VPNKit's handshake within {HandshakeTimeout.TotalSeconds:0} s; closed it");
        }
    }

    /// <summary>A frame the switch sends this VM.</summary>
    public void Deliver(ReadOnlySpan<byte> frame)
    {
        if (State != VpnkitConnectionState.Attached)
        {
            return;
        }
        if (_queue.Pending.Length >= FlushThreshold)
        {
            Flush();
        }
        if (!_queue.TryQueue(frame))
        {
            ReportOnce("full", $"{Name} does not take its frames as fast as they come; dropping what does not fit (reported once)");
        }
    }

    public void Flush()
    {
        while (State != VpnkitConnectionState.Closed && HasOutput)
        {
            var control = _controlSent < _control.Length;
            var pending = control ? _control.AsSpan(_controlSent) : _queue.Pending;
            var sent = socket.Send(pending, SocketFlags.None, out var error);
            if (error == SocketError.WouldBlock)
            {
                return;
            }
            if (error != SocketError.Success)
            {
                Close(Lost(error));
                return;
            }
            if (control)
            {
                _controlSent += sent;
            }
            else
            {
                _queue.Consumed(sent);
            }
        }
        if (State == VpnkitConnectionState.Refusing && !HasOutput && !_shutDown)
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

    public void Dispose()
    {
        State = VpnkitConnectionState.Closed;
        socket.Dispose();
    }

    private bool HasOutput => _controlSent < _control.Length || !_queue.IsEmpty;

    private void Read()
    {
        for (var i = 0; i < ReadsPerTurn && State != VpnkitConnectionState.Closed; i++)
        {
            var buffer = State switch
            {
                VpnkitConnectionState.AwaitingInit => _handshake.AsSpan(_handshakeFilled, VpnkitProtocol.InitLength - _handshakeFilled),
                VpnkitConnectionState.AwaitingCommand => _handshake.AsSpan(_handshakeFilled, VpnkitProtocol.CommandLength - _handshakeFilled),
                _ => _reader.FreeSpace(),
            };
            var read = socket.Receive(buffer, SocketFlags.None, out var error);
            if (error == SocketError.WouldBlock)
            {
                return;
            }
            if (error != SocketError.Success || read == 0)
            {
                Close(error != SocketError.Success ? Lost(error) : EndOfStream());
                return;
            }
            switch (State)
            {
                case VpnkitConnectionState.AwaitingInit or VpnkitConnectionState.AwaitingCommand:
                    _handshakeFilled += read;
                    Handshake();
                    break;
                case VpnkitConnectionState.Attached:
                    _reader.Received(read);
                    var dropped = _reader.DroppedFrames;
                    while (State == VpnkitConnectionState.Attached && _reader.TryReadFrame(out var frame))
                    {
                        network.Forward(this, frame);
                    }
                    if (_reader.DroppedFrames > dropped)
                    {
                        ReportOnce("length", $"{Name} sent a frame shorter than an Ethernet header or longer than {FrameStream.Vpnkit.MaxFrameLength} bytes; dropped it (reported once)");
                    }
                    break;
                default:
                    // Refusing: what the client still sends is read only to notice when it closes.
                    _reader.Reset();
                    break;
            }
        }
    }

    private void Handshake()
    {
        try
        {
            if (State == VpnkitConnectionState.AwaitingInit && VpnkitProtocol.TryReadInit(_handshake.AsSpan(0, _handshakeFilled), out var version))
            {
                _handshakeFilled = 0;
                _control = VpnkitProtocol.Init();
                _controlSent = 0;
                if (version != VpnkitProtocol.Version)
                {
                    // VPNKit's own answer: its init, so the client learns the version, then the close.
                    log($"{Name} speaks version {version} of VPNKit's protocol, not {VpnkitProtocol.Version}; closed it");
                    State = VpnkitConnectionState.Refusing;
                    return;
                }
                State = VpnkitConnectionState.AwaitingCommand;
            }
            else if (State == VpnkitConnectionState.AwaitingCommand && VpnkitProtocol.TryReadCommand(_handshake.AsSpan(0, _handshakeFilled), out var command))
            {
                var response = attach(this, command);
                _control = [.. _control.AsSpan(_controlSent), .. VpnkitProtocol.Response(response)];
                _controlSent = 0;
                State = response is VpnkitVif ? VpnkitConnectionState.Attached : VpnkitConnectionState.Refusing;
            }
        }
        catch (VpnkitProtocolException e)
        {
            log($"{Name}: {e.Message}; closed it");
            State = VpnkitConnectionState.Refusing;
            _control = _control.AsSpan(_controlSent).ToArray();
            _controlSent = 0;
        }
    }

    private string EndOfStream() => State switch
    {
        VpnkitConnectionState.Attached or VpnkitConnectionState.Refusing => "",
        _ when _handshakeFilled > 0 => $"{Name} closed the connection in the middle of a handshake message",
        _ => $"{Name} closed the connection during the handshake",
    };

    private string Lost(SocketError error) => State == VpnkitConnectionState.Refusing ? "" : $"{Name}'s connection failed ({error})";

    private void Close(string? reason)
    {
        if (State == VpnkitConnectionState.Closed)
        {
            return;
        }
        if (!string.IsNullOrEmpty(reason))
        {
            log(reason);
        }
        State = VpnkitConnectionState.Closed;
        socket.Dispose();
    }

    private void ReportOnce(string kind, string message)
    {
        if (_reported.Add(kind))
        {
            log(message);
        }
    }
}
