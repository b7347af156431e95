using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using Lkrun.Services.Network.Dhcp;
using Lkrun.Services.Network.Links;

namespace Lkrun.Services.Network.Shared.Vpnkit;

/// <summary>
/// A VM's attachment to a network that speaks VPNKit's ethernet protocol (lkrun's shared network, or VPNKit
/// itself), made by its lkrun before the VM starts: the connection after the handshake, and the interface granted
/// (<see cref="Vif"/>), whose MAC the VM's device must use. <see cref="ProbeAddress"/> then learns the address the
/// network's DHCP server gives that MAC, as VPNKit's own client does, so lkrun can announce it and publish ports
/// to it before the guest asks. The connection then carries the VM's frames (<see cref="SharedNetworkRelay"/>).
/// </summary>
public sealed class VpnkitAttachment : IDisposable
{
    /// <summary>How long the handshake, and separately the address probe, may take.</summary>
    public static readonly TimeSpan Timeout = TimeSpan.FromSeconds(10);

    private static readonly TimeSpan ProbeInterval = TimeSpan.FromSeconds(1);

    private VpnkitAttachment(string path, Socket socket, VpnkitVif vif)
    {
        Path = path;
        Socket = socket;
        Vif = vif;
    }

    /// <summary>The network's ethernet socket.</summary>
    public string Path { get; }

    /// <summary>The connection, blocking until it is handed to the relay.</summary>
    internal Socket Socket { get; }

    public VpnkitVif Vif { get; }

    /// <summary>
    /// Connects to <paramref name="path"/> and asks for the interface of <paramref name="uuid"/>, at
    /// <paramref name="preferred"/> when given. A refusal is a <see cref="VpnkitRefusedException"/> with the network's
    /// reason; anything else that goes wrong is a <see cref="NetworkException"/> naming the socket.
    /// </summary>
    public static VpnkitAttachment Open(string path, Guid uuid, IPAddress? preferred)
    {
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            socket.ReceiveTimeout = socket.SendTimeout = (int)Timeout.TotalMilliseconds;
            try
            {
                socket.Connect(new UnixDomainSocketEndPoint(path));
            }
            catch (SocketException e)
            {
                throw NetworkException.Host($"cannot connect to the network's ethernet socket {path}: {e.Message}");
            }
            var buffer = new byte[VpnkitProtocol.ResponseLength];
            socket.Send(VpnkitProtocol.Init());
            ReceiveExactly(socket, path, buffer.AsSpan(0, VpnkitProtocol.InitLength));
            VpnkitProtocol.TryReadInit(buffer, out var version);
            if (version != VpnkitProtocol.Version)
            {
                throw NetworkException.Host($"{path} speaks version {version} of VPNKit's ethernet protocol; lkrun speaks {VpnkitProtocol.Version}");
            }
            socket.Send(VpnkitProtocol.Command(new VpnkitCommand(uuid, preferred)));
            ReceiveExactly(socket, path, buffer);
            VpnkitProtocol.TryReadResponse(buffer, out var response);
            return response switch
            {
                VpnkitVif vif => new VpnkitAttachment(path, socket, vif),
                VpnkitDisconnect refused => throw new VpnkitRefusedException(refused.Reason),
                _ => throw new VpnkitProtocolException("unknown response"),
            };
        }
        catch (Exception e)
        {
            socket.Dispose();
            throw e switch
            {
                VpnkitProtocolException => NetworkException.Host($"{path}: {e.Message}"),
                SocketException socketError => NetworkException.Host($"the network at {path} did not answer: {socketError.Message}"),
                _ => e,
            };
        }
    }

    /// <summary>
    /// The address the network's DHCP server offers the interface, asked for with a DISCOVER every second until an
    /// OFFER comes or <see cref="Timeout"/> runs out. Other frames meanwhile are dropped, as on a wire whose VM has
    /// not booted.
    /// </summary>
    public IPAddress ProbeAddress()
    {
        var transaction = BitConverter.ToUInt32(RandomNumberGenerator.GetBytes(4));
        var discover = DhcpProbe.Discover(Vif.Mac, transaction);
        var queue = new FrameQueue(stream: FrameStream.Vpnkit);
        queue.TryQueue(discover);
        var prefixed = queue.Pending.ToArray();
        var reader = new FrameStreamReader(stream: FrameStream.Vpnkit);
        var deadline = DateTime.UtcNow + Timeout;
        var nextDiscover = DateTime.UtcNow;
        try
        {
            while (true)
            {
                var now = DateTime.UtcNow;
                if (now >= deadline)
                {
                    throw NetworkException.Host($"the network at {Path} offered the VM no address within {Timeout.TotalSeconds:0} s");
                }
                if (now >= nextDiscover)
                {
                    Socket.Send(prefixed);
                    nextDiscover = now + ProbeInterval;
                }
                var wait = Min(deadline, nextDiscover) - now;
                Socket.ReceiveTimeout = Math.Max(1, (int)wait.TotalMilliseconds);
                int read;
                try
                {
                    read = Socket.Receive(reader.FreeSpace());
                }
                catch (SocketException e) when (e.SocketErrorCode is SocketError.TimedOut or SocketError.WouldBlock)
                {
                    continue;
                }
                if (read == 0)
                {
                    throw NetworkException.Host($"the network at {Path} closed the VM's link");
                }
                reader.Received(read);
                while (reader.TryReadFrame(out var frame))
                {
                    if (DhcpProbe.OfferedAddress(frame, Vif.Mac, transaction) is { } offered)
                    {
                        return offered;
                    }
                }
            }
        }
        catch (SocketException e)
        {
            throw NetworkException.Host($"the network at {Path} failed while the VM's address was asked for: {e.Message}");
        }
    }

    public void Dispose() => Socket.Dispose();

    private static DateTime Min(DateTime a, DateTime b) => a < b ? a : b;

    private static void ReceiveExactly(Socket socket, string path, Span<byte> buffer)
    {
        var filled = 0;
        while (filled < buffer.Length)
        {
            var read = socket.Receive(buffer[filled..]);
            if (read == 0)
            {
                throw NetworkException.Host($"the network at {path} closed the connection during VPNKit's handshake");
            }
            filled += read;
        }
    }
}

/// <summary>The network refused the interface (a disconnect response); the message is its reason.</summary>
public sealed class VpnkitRefusedException(string reason) : Exception(reason);
