using System.Buffers.Binary;

namespace Lkrun.Services.Network.Packets;

/// <summary>A view of a UDP datagram whose length field fits the bytes at hand; the payload ends where that says.</summary>
public readonly ref struct UdpDatagram
{
    public const int HeaderLength = 8;

    private readonly ReadOnlySpan<byte> _bytes;

    private UdpDatagram(ReadOnlySpan<byte> bytes) => _bytes = bytes;

    public ushort SourcePort => BinaryPrimitives.ReadUInt16BigEndian(_bytes);

    public ushort DestinationPort => BinaryPrimitives.ReadUInt16BigEndian(_bytes[2..]);

    public ReadOnlySpan<byte> Payload => _bytes[HeaderLength..];

    public static bool TryParse(ReadOnlySpan<byte> bytes, out UdpDatagram datagram)
    {
        datagram = default;
        if (bytes.Length < HeaderLength)
        {
            return false;
        }
        var length = BinaryPrimitives.ReadUInt16BigEndian(bytes[4..]);
        if (length < HeaderLength || length > bytes.Length)
        {
            return false;
        }
        datagram = new UdpDatagram(bytes[..length]);
        return true;
    }

    /// <summary>
    /// Writes the header for the <paramref name="payloadLength"/> bytes that follow it in
    /// <paramref name="destination"/>, with the checksum over the IPv4 pseudo-header.
    /// </summary>
    public static void WriteHeader(Span<byte> destination, uint source, ushort sourcePort, uint target, ushort targetPort, int payloadLength)
    {
        var length = checked((ushort)(HeaderLength + payloadLength));
        var datagram = destination[..length];
        BinaryPrimitives.WriteUInt16BigEndian(datagram, sourcePort);
        BinaryPrimitives.WriteUInt16BigEndian(datagram[2..], targetPort);
        BinaryPrimitives.WriteUInt16BigEndian(datagram[4..], length);
        BinaryPrimitives.WriteUInt16BigEndian(datagram[6..], 0);
        var sum = InternetChecksum.Add(0, source);
        sum = InternetChecksum.Add(sum, target);
        sum = InternetChecksum.Add(sum, Ipv4Packet.ProtocolUdp);
        sum = InternetChecksum.Add(sum, length);
        var checksum = InternetChecksum.Complete(InternetChecksum.Add(sum, datagram));
        // Zero means "no checksum" in UDP over IPv4, so a computed zero is sent as its other form.
        BinaryPrimitives.WriteUInt16BigEndian(datagram[6..], checksum == 0 ? (ushort)0xffff : checksum);
    }
}
