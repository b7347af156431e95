using System.Buffers.Binary;

namespace Lkrun.Services.Network.Packets;

/// <summary>A view of an Ethernet II frame: two MAC addresses and the EtherType, then the payload. No VLAN tags.</summary>
public readonly ref struct EthernetFrame
{
    public const int HeaderLength = 14;
    public const ushort TypeIpv4 = 0x0800;
    public const ushort TypeArp = 0x0806;

    private readonly ReadOnlySpan<byte> _bytes;

    private EthernetFrame(ReadOnlySpan<byte> bytes) => _bytes = bytes;

    public MacAddress Destination => MacAddress.FromBytes(_bytes[..6]);

    public MacAddress Source => MacAddress.FromBytes(_bytes[6..12]);

    public ushort EtherType => BinaryPrimitives.ReadUInt16BigEndian(_bytes[12..]);

    public ReadOnlySpan<byte> Payload => _bytes[HeaderLength..];

    /// <summary>False when <paramref name="bytes"/> is too short to hold the header.</summary>
    public static bool TryParse(ReadOnlySpan<byte> bytes, out EthernetFrame frame)
    {
        frame = bytes.Length >= HeaderLength ? new EthernetFrame(bytes) : default;
        return bytes.Length >= HeaderLength;
    }

    /// <summary>Writes a header into the first <see cref="HeaderLength"/> bytes of <paramref name="destination"/>.</summary>
    public static void WriteHeader(Span<byte> destination, MacAddress to, MacAddress from, ushort etherType)
    {
        to.CopyTo(destination[..6]);
        from.CopyTo(destination[6..12]);
        BinaryPrimitives.WriteUInt16BigEndian(destination[12..], etherType);
    }
}
