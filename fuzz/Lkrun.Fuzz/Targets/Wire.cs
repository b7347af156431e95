using System.Buffers.Binary;
using Lkrun.Services.Network.Packets;

namespace Lkrun.Fuzz.Targets;

/// <summary>Builds frames and messages for seeds and for wrapping fuzzed payloads, with lkrun's own header writers.</summary>
internal static class Wire
{
    public static readonly MacAddress GuestMac = MacAddress.FromBytes([0x02, 0x4c, 0x4b, 0x00, 0x00, 0x07]);

    /// <summary>An Ethernet frame carrying a UDP datagram in IPv4.</summary>
    public static byte[] Udp(MacAddress from, MacAddress to, uint source, ushort sourcePort, uint target, ushort targetPort, ReadOnlySpan<byte> payload)
    {
        var frame = new byte[EthernetFrame.HeaderLength + Ipv4Packet.MinimumHeaderLength + UdpDatagram.HeaderLength + payload.Length];
        EthernetFrame.WriteHeader(frame, to, from, EthernetFrame.TypeIpv4);
        var ip = frame.AsSpan(EthernetFrame.HeaderLength);
        Ipv4Packet.WriteHeader(ip, Ipv4Packet.ProtocolUdp, source, target, UdpDatagram.HeaderLength + payload.Length);
        var udp = ip[Ipv4Packet.MinimumHeaderLength..];
        payload.CopyTo(udp[UdpDatagram.HeaderLength..]);
        UdpDatagram.WriteHeader(udp, source, sourcePort, target, targetPort, payload.Length);
        return frame;
    }

    /// <summary>A client's DHCP message (BOOTP header, cookie, options as given, end option).</summary>
    public static byte[] DhcpClientMessage(byte type, uint xid, uint clientAddress = 0, params byte[][] options)
    {
        var message = new List<byte>(300);
        message.AddRange([1, 1, 6, 0]);
        message.AddRange(BigEndian(xid));
        message.AddRange([0, 0, 0x80, 0]);
        message.AddRange(BigEndian(clientAddress));
        message.AddRange(new byte[12]);
        Span<byte> mac = stackalloc byte[6];
        GuestMac.CopyTo(mac);
        message.AddRange(mac.ToArray());
        message.AddRange(new byte[10 + 64 + 128]);
        message.AddRange([0x63, 0x82, 0x53, 0x63, 53, 1, type]);
        foreach (var option in options)
        {
            message.AddRange(option);
        }
        message.Add(255);
        return [.. message];
    }

    public static byte[] BigEndian(uint value)
    {
        var bytes = new byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(bytes, value);
        return bytes;
    }

    /// <summary>A deterministic stream of small numbers from a seed, to cut inputs into pieces the same way every run.</summary>
    public sealed class Chopper(ReadOnlySpan<byte> seed)
    {
        private uint _state = seed.Length >= 4 ? BinaryPrimitives.ReadUInt32LittleEndian(seed) | 1 : 0x9e3779b9;

        public int Next(int max)
        {
            _state ^= _state << 13;
            _state ^= _state >> 17;
            _state ^= _state << 5;
            return (int)(_state % (uint)max);
        }
    }
}
