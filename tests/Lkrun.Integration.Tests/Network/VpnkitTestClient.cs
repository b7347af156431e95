using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace Lkrun.Tests.Vpnkit;

/// <summary>
/// A client of VPNKit's ethernet protocol, written from VPNKit's documentation of it (hyperkit's
/// <c>pci_virtio_net_vpnkit.c</c> wire structs, VPNKit's Go client <c>go/pkg/vmnet</c>) and from RFC 2131 for
/// DHCP, with nothing of lkrun's code: a second, independent reading of the protocol to check lkrun's service
/// against. It uses only the base library, so that both test projects can compile it in.
/// <list type="bullet">
/// <item>init (49 bytes) both ways: "VMN3T", version 22 as a little-endian u32, 40 bytes of commit;</item>
/// <item>command (41 bytes): 1 for an interface, or 8 with a preferred address, then the UUID as 36 characters,
/// then the address as a little-endian u32 of its big-endian value (zero for command 1);</item>
/// <item>response (258 bytes): 1, MTU (u16 LE), largest packet (u16 LE), MAC (6 bytes); or 2, a length byte and a
/// reason;</item>
/// <item>then frames, each after its length as a little-endian u16.</item>
/// </list>
/// </summary>
public sealed class VpnkitTestClient : IAsyncDisposable
{
    private readonly Socket _socket;
    private readonly NetworkStream _stream;

    private VpnkitTestClient(Socket socket, int mtu, int maxPacketSize, byte[] mac)
    {
        _socket = socket;
        _stream = new NetworkStream(socket, ownsSocket: true);
        Mtu = mtu;
        MaxPacketSize = maxPacketSize;
        Mac = mac;
    }

    public int Mtu { get; }

    public int MaxPacketSize { get; }

    /// <summary>The six bytes of the interface's MAC, as the server granted it.</summary>
    public byte[] Mac { get; }

    public string MacText => string.Join(':', Mac.Select(b => b.ToString("x2")));

    /// <summary>The server's version from its init message.</summary>
    public uint ServerVersion { get; private init; }

    public static byte[] InitMessage(uint version = 22)
    {
        var message = new byte[49];
        "VMN3T"u8.CopyTo(message);
        BinaryPrimitives.WriteUInt32LittleEndian(message.AsSpan(5), version);
        Encoding.ASCII.GetBytes(new string('a', 40)).CopyTo(message, 9);
        return message;
    }

    public static byte[] CommandMessage(Guid uuid, IPAddress? preferred = null)
    {
        var message = new byte[41];
        message[0] = preferred is null ? (byte)1 : (byte)8;
        Encoding.ASCII.GetBytes(uuid.ToString()).CopyTo(message, 1);
        if (preferred is not null)
        {
            var bytes = preferred.GetAddressBytes();
            BinaryPrimitives.WriteUInt32LittleEndian(message.AsSpan(37), BinaryPrimitives.ReadUInt32BigEndian(bytes));
        }
        return message;
    }

    /// <summary>Connects and asks for the interface of <paramref name="uuid"/>; a refusal throws with the server's reason.</summary>
    public static async Task<VpnkitTestClient> ConnectAsync(string path, Guid uuid, IPAddress? preferred = null, CancellationToken cancellation = default)
    {
        var socket = await ConnectRawAsync(path, cancellation);
        try
        {
            await socket.SendAsync(InitMessage(), cancellation);
            var init = await ReadExactlyAsync(socket, 49, cancellation);
            if (!init.AsSpan(0, 5).SequenceEqual("VMN3T"u8))
            {
                throw new InvalidDataException("the server's init message has no VMN3T magic");
            }
            var version = BinaryPrimitives.ReadUInt32LittleEndian(init.AsSpan(5));
            await socket.SendAsync(CommandMessage(uuid, preferred), cancellation);
            var response = await ReadExactlyAsync(socket, 258, cancellation);
            if (response[0] == 2)
            {
                throw new VpnkitRefusal(Encoding.UTF8.GetString(response, 2, response[1]));
            }
            if (response[0] != 1)
            {
                throw new InvalidDataException($"unknown response type {response[0]}");
            }
            return new VpnkitTestClient(
                socket, BinaryPrimitives.ReadUInt16LittleEndian(response.AsSpan(1)), BinaryPrimitives.ReadUInt16LittleEndian(response.AsSpan(3)),
                response[5..11]) { ServerVersion = version };
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    public static async Task<Socket> ConnectRawAsync(string path, CancellationToken cancellation = default)
    {
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            await socket.ConnectAsync(new UnixDomainSocketEndPoint(path), cancellation);
            return socket;
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    public static async Task<byte[]> ReadExactlyAsync(Socket socket, int count, CancellationToken cancellation)
    {
        var buffer = new byte[count];
        var filled = 0;
        while (filled < count)
        {
            var read = await socket.ReceiveAsync(buffer.AsMemory(filled), cancellation);
            if (read == 0)
            {
                throw new EndOfStreamException($"the server closed the connection after {filled} of {count} bytes");
            }
            filled += read;
        }
        return buffer;
    }

    public async Task SendFrameAsync(byte[] frame, CancellationToken cancellation = default)
    {
        var message = new byte[2 + frame.Length];
        BinaryPrimitives.WriteUInt16LittleEndian(message, checked((ushort)frame.Length));
        frame.CopyTo(message, 2);
        await _stream.WriteAsync(message, cancellation);
    }

    /// <summary>Bytes as they are, for tests that break the framing on purpose.</summary>
    public async Task SendRawAsync(byte[] bytes, CancellationToken cancellation = default) => await _stream.WriteAsync(bytes, cancellation);

    /// <summary>The next frame; null once the server has closed the connection.</summary>
    public async Task<byte[]?> ReceiveFrameAsync(CancellationToken cancellation)
    {
        var length = new byte[2];
        try
        {
            await _stream.ReadExactlyAsync(length, cancellation);
            var frame = new byte[BinaryPrimitives.ReadUInt16LittleEndian(length)];
            await _stream.ReadExactlyAsync(frame, cancellation);
            return frame;
        }
        catch (EndOfStreamException)
        {
            return null;
        }
        catch (IOException)
        {
            return null;
        }
    }

    /// <summary>The first frame that <paramref name="wanted"/> accepts, skipping others, within <paramref name="timeout"/>.</summary>
    public async Task<byte[]> ReceiveAsync(Func<byte[], bool> wanted, TimeSpan timeout)
    {
        using var cancellation = new CancellationTokenSource(timeout);
        while (true)
        {
            var frame = await ReceiveFrameAsync(cancellation.Token) ?? throw new EndOfStreamException("the server closed the connection");
            if (wanted(frame))
            {
                return frame;
            }
        }
    }

    /// <summary>DHCP's whole exchange (DISCOVER, OFFER, REQUEST, ACK); the address acknowledged.</summary>
    public async Task<IPAddress> LeaseAsync(TimeSpan timeout)
    {
        var xid = (uint)Random.Shared.Next();
        using var deadline = new CancellationTokenSource(timeout);
        byte[]? offer = null;
        while (offer is null)
        {
            await SendFrameAsync(Dhcp(xid, messageType: 1, requested: null, server: null), deadline.Token);
            try
            {
                offer = await ReceiveAsync(frame => IsDhcpReply(frame, xid, messageType: 2), TimeSpan.FromSeconds(2));
            }
            catch (OperationCanceledException) when (!deadline.IsCancellationRequested)
            {
            }
        }
        var offered = DhcpField(offer, 16);
        var server = OptionOf(offer, 54) ?? throw new InvalidDataException("the offer names no server");
        await SendFrameAsync(Dhcp(xid, messageType: 3, requested: offered, server: new IPAddress(server)), deadline.Token);
        var ack = await ReceiveAsync(frame => IsDhcpReply(frame, xid, messageType: 5) || IsDhcpReply(frame, xid, messageType: 6), timeout);
        if (OptionOf(ack, 53)![0] != 5)
        {
            throw new InvalidDataException("the server answered the request with a NAK");
        }
        return DhcpField(ack, 16);
    }

    public async ValueTask DisposeAsync() => await _stream.DisposeAsync();

    /// <summary>A DHCP client message, broadcast from 0.0.0.0:68 to 255.255.255.255:67, with a UDP checksum.</summary>
    private byte[] Dhcp(uint xid, byte messageType, IPAddress? requested, IPAddress? server)
    {
        var dhcp = new List<byte> { 1, 1, 6, 0 };
        dhcp.AddRange([(byte)(xid >> 24), (byte)(xid >> 16), (byte)(xid >> 8), (byte)xid]);
        dhcp.AddRange(new byte[2 + 2 + 16]); // secs, flags (unicast replies), ciaddr, yiaddr, siaddr, giaddr
        dhcp.AddRange(Mac);
        dhcp.AddRange(new byte[10 + 64 + 128]);
        dhcp.AddRange([99, 130, 83, 99, 53, 1, messageType]);
        if (requested is not null)
        {
            dhcp.AddRange([50, 4, .. requested.GetAddressBytes()]);
        }
        if (server is not null)
        {
            dhcp.AddRange([54, 4, .. server.GetAddressBytes()]);
        }
        dhcp.Add(255);
        while (dhcp.Count < 300)
        {
            dhcp.Add(0);
        }
        var udp = new byte[8 + dhcp.Count];
        BinaryPrimitives.WriteUInt16BigEndian(udp, 68);
        BinaryPrimitives.WriteUInt16BigEndian(udp.AsSpan(2), 67);
        BinaryPrimitives.WriteUInt16BigEndian(udp.AsSpan(4), (ushort)udp.Length);
        dhcp.CopyTo(udp, 8);
        byte[] pseudo = [0, 0, 0, 0, 255, 255, 255, 255, 0, 17, (byte)(udp.Length >> 8), (byte)udp.Length];
        var checksum = (ushort)~Sum([.. pseudo, .. udp]);
        BinaryPrimitives.WriteUInt16BigEndian(udp.AsSpan(6), checksum == 0 ? (ushort)0xffff : checksum);
        var ip = new byte[20 + udp.Length];
        ip[0] = 0x45;
        BinaryPrimitives.WriteUInt16BigEndian(ip.AsSpan(2), (ushort)ip.Length);
        ip[8] = 64;
        ip[9] = 17;
        ip.AsSpan(16, 4).Fill(255);
        BinaryPrimitives.WriteUInt16BigEndian(ip.AsSpan(10), (ushort)~Sum(ip.AsSpan(0, 20)));
        udp.CopyTo(ip, 20);
        return [.. Enumerable.Repeat((byte)0xff, 6), .. Mac, 0x08, 0x00, .. ip];
    }

    private bool IsDhcpReply(byte[] frame, uint xid, byte messageType) =>
        frame.Length >= 14 + 20 + 8 + 240 && frame[12] == 0x08 && frame[13] == 0 && frame[14 + 9] == 17 &&
        BinaryPrimitives.ReadUInt16BigEndian(frame.AsSpan(14 + 20)) == 67 && BinaryPrimitives.ReadUInt16BigEndian(frame.AsSpan(14 + 22)) == 68 &&
        frame[14 + 28] == 2 && BinaryPrimitives.ReadUInt32BigEndian(frame.AsSpan(14 + 28 + 4)) == xid &&
        frame.AsSpan(14 + 28 + 28, 6).SequenceEqual(Mac) && OptionOf(frame, 53) is [var type] && type == messageType;

    /// <summary>A 4-byte address field of the DHCP message in <paramref name="frame"/> (no IP options assumed).</summary>
    private static IPAddress DhcpField(byte[] frame, int offset) => new(frame.AsSpan(14 + 28 + offset, 4));

    private static byte[]? OptionOf(byte[] frame, byte code)
    {
        var i = 14 + 28 + 240;
        while (i + 1 < frame.Length && frame[i] != 255)
        {
            if (frame[i] == 0)
            {
                i++;
                continue;
            }
            var length = frame[i + 1];
            if (frame[i] == code && i + 2 + length <= frame.Length)
            {
                return frame[(i + 2)..(i + 2 + length)];
            }
            i += 2 + length;
        }
        return null;
    }

    private static ushort Sum(ReadOnlySpan<byte> bytes)
    {
        uint sum = 0;
        for (var i = 0; i < bytes.Length; i += 2)
        {
            sum += (uint)(bytes[i] << 8) | (i + 1 < bytes.Length ? bytes[i + 1] : 0u);
        }
        while (sum > 0xffff)
        {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        return (ushort)sum;
    }
}

/// <summary>The server refused the interface; the message is its reason.</summary>
public sealed class VpnkitRefusal(string reason) : Exception(reason);
