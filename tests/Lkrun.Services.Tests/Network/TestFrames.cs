using System.Buffers.Binary;
using System.Net;
using Lkrun.Services.Network;
using Lkrun.Services.Network.Packets;
using Lkrun.Services.Network.Slirp;

namespace Lkrun.Services.Tests.Network;

/// <summary>Frames as a guest sends them, written byte by byte here rather than with the code under test.</summary>
internal static class TestFrames
{
    public static readonly MacAddress GuestMac = MacAddress.FromBytes([0x02, 0x4c, 0x4b, 0x00, 0x00, 0x07]);
    public static readonly IPAddress Leased = IPAddress.Parse("192.168.65.3");
    public static readonly IPAddress Gateway = IPAddress.Parse("192.168.65.1");

    /// <summary>The options a DHCP client puts in a message: message type first, then the others in order.</summary>
    public sealed record DhcpOptions(byte Type)
    {
        public IPAddress? Requested { get; init; }
        public IPAddress? Server { get; init; }
        public byte[] Extra { get; init; } = [];
    }

    /// <summary>A client's DHCP message from <paramref name="mac"/>, broadcast from 0.0.0.0:68 to 255.255.255.255:67.</summary>
    public static byte[] ClientDhcp(
        DhcpOptions options, MacAddress? mac = null, IPAddress? clientAddress = null, uint xid = 0x1234abcd,
        bool broadcast = false, IPAddress? source = null, IPAddress? destination = null, ushort destinationPort = 67,
        IPAddress? relay = null)
    {
        var chaddr = mac ?? GuestMac;
        var message = new List<byte>();
        message.AddRange([1, 1, 6, 0]);
        message.AddRange(BigEndian(xid));
        message.AddRange([0, 0, (byte)(broadcast ? 0x80 : 0), 0]);
        message.AddRange((clientAddress ?? IPAddress.Any).GetAddressBytes());
        message.AddRange(new byte[8]); // yiaddr, siaddr
        message.AddRange((relay ?? IPAddress.Any).GetAddressBytes());
        message.AddRange(Mac(chaddr));
        message.AddRange(new byte[10 + 64 + 128]);
        message.AddRange([99, 130, 83, 99]);
        message.AddRange([53, 1, options.Type]);
        if (options.Requested is { } requested)
        {
            message.AddRange([50, 4, .. requested.GetAddressBytes()]);
        }
        if (options.Server is { } server)
        {
            message.AddRange([54, 4, .. server.GetAddressBytes()]);
        }
        message.AddRange(options.Extra);
        message.Add(255);
        return Udp(chaddr, MacAddress.Broadcast, source ?? clientAddress ?? IPAddress.Any, destination ?? IPAddress.Broadcast, 68, destinationPort, [.. message]);
    }

    public static byte[] Udp(MacAddress from, MacAddress to, IPAddress source, IPAddress destination, ushort sourcePort, ushort destinationPort, byte[] payload)
    {
        var udp = new byte[8 + payload.Length];
        BinaryPrimitives.WriteUInt16BigEndian(udp, sourcePort);
        BinaryPrimitives.WriteUInt16BigEndian(udp.AsSpan(2), destinationPort);
        BinaryPrimitives.WriteUInt16BigEndian(udp.AsSpan(4), (ushort)udp.Length);
        payload.CopyTo(udp, 8);
        return Ethernet(from, to, 0x0800, Ipv4(17, source, destination, udp));
    }

    /// <summary>An IPv4 packet with a 20-byte header and a correct header checksum.</summary>
    public static byte[] Ipv4(byte protocol, IPAddress source, IPAddress destination, byte[] payload)
    {
        var packet = new byte[20 + payload.Length];
        packet[0] = 0x45;
        BinaryPrimitives.WriteUInt16BigEndian(packet.AsSpan(2), (ushort)packet.Length);
        packet[8] = 64;
        packet[9] = protocol;
        source.GetAddressBytes().CopyTo(packet, 12);
        destination.GetAddressBytes().CopyTo(packet, 16);
        BinaryPrimitives.WriteUInt16BigEndian(packet.AsSpan(10), (ushort)~OnesComplementSum(packet.AsSpan(0, 20)));
        payload.CopyTo(packet, 20);
        return packet;
    }

    /// <summary>A TCP segment with only SYN set (no options), its checksum over the IPv4 pseudo-header included.</summary>
    public static byte[] TcpSyn(IPAddress source, ushort sourcePort, IPAddress destination, ushort destinationPort, uint sequence)
    {
        var tcp = new byte[20];
        BinaryPrimitives.WriteUInt16BigEndian(tcp, sourcePort);
        BinaryPrimitives.WriteUInt16BigEndian(tcp.AsSpan(2), destinationPort);
        BinaryPrimitives.WriteUInt32BigEndian(tcp.AsSpan(4), sequence);
        tcp[12] = 5 << 4;
        tcp[13] = 0x02;
        BinaryPrimitives.WriteUInt16BigEndian(tcp.AsSpan(14), 65535);
        byte[] pseudo = [.. source.GetAddressBytes(), .. destination.GetAddressBytes(), 0, 6, 0, 20];
        BinaryPrimitives.WriteUInt16BigEndian(tcp.AsSpan(16), (ushort)~OnesComplementSum([.. pseudo, .. tcp]));
        return Ethernet(GuestMac, SlirpStack.GatewayMac, 0x0800, Ipv4(6, source, destination, tcp));
    }

    public static byte[] Ethernet(MacAddress from, MacAddress to, ushort etherType, byte[] payload) =>
        [.. Mac(to), .. Mac(from), (byte)(etherType >> 8), (byte)etherType, .. payload];

    /// <summary>An ARP request from the guest asking who has <paramref name="target"/>.</summary>
    public static byte[] ArpRequest(IPAddress sender, IPAddress target) =>
        Ethernet(GuestMac, MacAddress.Broadcast, 0x0806,
        [
            0, 1, 8, 0, 6, 4, 0, 1, .. Mac(GuestMac), .. sender.GetAddressBytes(), 0, 0, 0, 0, 0, 0, .. target.GetAddressBytes(),
        ]);

    /// <summary>The guest's ARP reply to <paramref name="asker"/>: <paramref name="address"/> is at the guest's MAC.</summary>
    public static byte[] ArpReply(IPAddress address, MacAddress askerMac, IPAddress asker) =>
        Ethernet(GuestMac, askerMac, 0x0806,
        [
            0, 1, 8, 0, 6, 4, 0, 2, .. Mac(GuestMac), .. address.GetAddressBytes(), .. Mac(askerMac), .. asker.GetAddressBytes(),
        ]);

    public static byte[] Mac(MacAddress mac) => [.. Enumerable.Range(0, 6).Select(i => mac[i])];

    public static byte[] BigEndian(uint value) => [(byte)(value >> 24), (byte)(value >> 16), (byte)(value >> 8), (byte)value];

    /// <summary>RFC 1071's sum, folded to 16 bits and not complemented: 0xffff over data that carries its checksum.</summary>
    public static ushort OnesComplementSum(ReadOnlySpan<byte> bytes)
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

    /// <summary>The UDP checksum check of a received frame: the sum over pseudo-header and datagram is 0xffff.</summary>
    public static bool UdpChecksumHolds(byte[] frame)
    {
        var ip = frame.AsSpan(14);
        var headerLength = (ip[0] & 0x0f) * 4;
        var udp = ip[headerLength..BinaryPrimitives.ReadUInt16BigEndian(ip[2..])];
        byte[] pseudo = [.. ip.Slice(12, 8).ToArray(), 0, 17, (byte)(udp.Length >> 8), (byte)udp.Length];
        return OnesComplementSum([.. pseudo, .. udp.ToArray()]) == 0xffff;
    }
}
