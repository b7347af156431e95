using System.Buffers.Binary;
using System.Net;

namespace Lkrun.Services.Network.Packets;

/// <summary>
/// A view of an IPv4 packet. <see cref="TryParse"/> accepts only a header whose lengths agree with each other and
/// with the bytes at hand, so the payload is always inside them; trailing bytes (Ethernet padding) are cut off.
/// </summary>
public readonly ref struct Ipv4Packet
{
    public const int MinimumHeaderLength = 20;
    public const byte ProtocolUdp = 17;

    private readonly ReadOnlySpan<byte> _bytes;
    private readonly int _headerLength;

    private Ipv4Packet(ReadOnlySpan<byte> bytes, int headerLength)
    {
        _bytes = bytes;
        _headerLength = headerLength;
    }

    public byte Protocol => _bytes[9];

    /// <summary>Set for any fragment of a fragmented packet: the first has more-fragments, the others an offset.</summary>
    public bool IsFragment => (BinaryPrimitives.ReadUInt16BigEndian(_bytes[6..]) & 0x3fff) != 0;

    public uint Source => BinaryPrimitives.ReadUInt32BigEndian(_bytes[12..]);

    public uint Destination => BinaryPrimitives.ReadUInt32BigEndian(_bytes[16..]);

    public ReadOnlySpan<byte> Payload => _bytes[_headerLength..];

    public static bool TryParse(ReadOnlySpan<byte> bytes, out Ipv4Packet packet)
    {
        packet = default;
        if (bytes.Length < MinimumHeaderLength || bytes[0] >> 4 != 4)
        {
            return false;
        }
        var headerLength = (bytes[0] & 0x0f) * 4;
        var totalLength = BinaryPrimitives.ReadUInt16BigEndian(bytes[2..]);
        if (headerLength < MinimumHeaderLength || totalLength < headerLength || totalLength > bytes.Length)
        {
            return false;
        }
        packet = new Ipv4Packet(bytes[..totalLength], headerLength);
        return true;
    }

    /// <summary>
    /// Writes a 20-byte header (no options, not fragmented, TTL 64) for a packet of <paramref name="payloadLength"/>
    /// bytes, checksum included.
    /// </summary>
    public static void WriteHeader(Span<byte> destination, byte protocol, uint source, uint target, int payloadLength)
    {
        var header = destination[..MinimumHeaderLength];
        header.Clear();
        header[0] = 0x45;
        BinaryPrimitives.WriteUInt16BigEndian(header[2..], checked((ushort)(MinimumHeaderLength + payloadLength)));
        header[8] = 64;
        header[9] = protocol;
        BinaryPrimitives.WriteUInt32BigEndian(header[12..], source);
        BinaryPrimitives.WriteUInt32BigEndian(header[16..], target);
        BinaryPrimitives.WriteUInt16BigEndian(header[10..], InternetChecksum.Complete(InternetChecksum.Add(0, header)));
    }

    /// <summary>An address as the 32-bit number the wire carries (most significant octet first).</summary>
    public static uint ToUInt32(IPAddress address) => BinaryPrimitives.ReadUInt32BigEndian(address.GetAddressBytes());

    public static IPAddress ToAddress(uint address)
    {
        Span<byte> bytes = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(bytes, address);
        return new IPAddress(bytes);
    }
}

/// <summary>The one's-complement sum of RFC 1071, as IPv4, UDP and TCP use it.</summary>
public static class InternetChecksum
{
    /// <summary>Adds <paramref name="bytes"/> (as big-endian 16-bit words, an odd last byte padded) to a running sum.</summary>
    public static uint Add(uint sum, ReadOnlySpan<byte> bytes)
    {
        ulong total = sum;
        var i = 0;
        for (; i + 1 < bytes.Length; i += 2)
        {
            total += BinaryPrimitives.ReadUInt16BigEndian(bytes[i..]);
        }
        if (i < bytes.Length)
        {
            total += (uint)bytes[i] << 8;
        }
        return Fold(total);
    }

    public static uint Add(uint sum, uint value) => Fold((ulong)sum + (value >> 16) + (value & 0xffff));

    /// <summary>The checksum field's value: the folded sum, complemented.</summary>
    public static ushort Complete(uint sum) => (ushort)~Fold(sum);

    private static uint Fold(ulong sum)
    {
        while (sum > 0xffff)
        {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        return (uint)sum;
    }
}
