using System.Buffers.Binary;
using Lkrun.Services.VhostUser;

namespace Lkrun.Services.Vsock;

/// <summary>The 44-byte little-endian header every virtio-vsock packet starts with.</summary>
internal struct VsockHeader
{
    public ulong SourceCid;
    public ulong DestinationCid;
    public uint SourcePort;
    public uint DestinationPort;
    public uint Length;
    public ushort Type;
    public VsockOp Op;
    public uint Flags;
    public uint BufferAllocation;
    public uint ForwardCount;

    public static VsockHeader Read(ReadOnlySpan<byte> bytes) => new()
    {
        SourceCid = BinaryPrimitives.ReadUInt64LittleEndian(bytes),
        DestinationCid = BinaryPrimitives.ReadUInt64LittleEndian(bytes[8..]),
        SourcePort = BinaryPrimitives.ReadUInt32LittleEndian(bytes[16..]),
        DestinationPort = BinaryPrimitives.ReadUInt32LittleEndian(bytes[20..]),
        Length = BinaryPrimitives.ReadUInt32LittleEndian(bytes[24..]),
        Type = BinaryPrimitives.ReadUInt16LittleEndian(bytes[28..]),
        Op = (VsockOp)BinaryPrimitives.ReadUInt16LittleEndian(bytes[30..]),
        Flags = BinaryPrimitives.ReadUInt32LittleEndian(bytes[32..]),
        BufferAllocation = BinaryPrimitives.ReadUInt32LittleEndian(bytes[36..]),
        ForwardCount = BinaryPrimitives.ReadUInt32LittleEndian(bytes[40..]),
    };

    public readonly void Write(Span<byte> bytes)
    {
        BinaryPrimitives.WriteUInt64LittleEndian(bytes, SourceCid);
        BinaryPrimitives.WriteUInt64LittleEndian(bytes[8..], DestinationCid);
        BinaryPrimitives.WriteUInt32LittleEndian(bytes[16..], SourcePort);
        BinaryPrimitives.WriteUInt32LittleEndian(bytes[20..], DestinationPort);
        BinaryPrimitives.WriteUInt32LittleEndian(bytes[24..], Length);
        BinaryPrimitives.WriteUInt16LittleEndian(bytes[28..], Type);
        BinaryPrimitives.WriteUInt16LittleEndian(bytes[30..], (ushort)Op);
        BinaryPrimitives.WriteUInt32LittleEndian(bytes[32..], Flags);
        BinaryPrimitives.WriteUInt32LittleEndian(bytes[36..], BufferAllocation);
        BinaryPrimitives.WriteUInt32LittleEndian(bytes[40..], ForwardCount);
    }

    /// <summary>The reset answering this packet: addresses swapped, no payload.</summary>
    public readonly VsockHeader ResetReply() => new()
    {
        SourceCid = DestinationCid,
        DestinationCid = SourceCid,
        SourcePort = DestinationPort,
        DestinationPort = SourcePort,
        Type = Type,
        Op = VsockOp.Reset,
    };

    public override readonly string ToString() =>
        $"{Op} {SourceCid}:{SourcePort} -> {DestinationCid}:{DestinationPort} len {Length}";
}

internal enum VsockPacketError
{
    /// <summary>The chain cannot hold a header: nothing identifies a connection, the packet is dropped.</summary>
    Truncated,

    /// <summary>The source is not the guest: a spoofed packet, dropped without an answer.</summary>
    WrongSource,

    /// <summary>Addressed to a CID other than the host's; answered with a reset.</summary>
    WrongDestination,

    /// <summary>Not a stream packet; answered with a reset.</summary>
    UnsupportedType,

    /// <summary>An operation the protocol does not define; the connection is reset.</summary>
    UnknownOp,

    /// <summary>The payload length is above the maximum or beyond the buffer the guest supplied; the connection is reset.</summary>
    BadLength,
}

/// <summary>A guest packet broke the protocol; <see cref="Header"/> is set when the header could be read.</summary>
internal sealed class VsockPacketException(VsockPacketError error, VsockHeader? header, string message) : Exception(message)
{
    public VsockPacketError Error { get; } = error;

    public VsockHeader? Header { get; } = header;
}

/// <summary>The boundary check for packets from the guest's transmit queue.</summary>
internal static class VsockPacket
{
    /// <summary>
    /// Reads and validates the header of a transmitted chain. After this, <c>Length</c> payload bytes are known to
    /// follow the header in the chain's readable part and to be at most <see cref="VsockLimits.MaxPacketPayload"/>.
    /// </summary>
    public static VsockHeader ParseFromGuest(DescriptorChain chain, ulong guestCid)
    {
        Span<byte> bytes = stackalloc byte[VsockLimits.HeaderSize];
        if (chain.ReadableLength < VsockLimits.HeaderSize || chain.CopyFromReadable(0, bytes) != VsockLimits.HeaderSize)
        {
            throw new VsockPacketException(VsockPacketError.Truncated, null, $"packet of {chain.ReadableLength} bytes has no header");
        }

        var header = VsockHeader.Read(bytes);
        if (header.SourceCid != guestCid)
        {
            throw new VsockPacketException(VsockPacketError.WrongSource, header, $"packet from CID {header.SourceCid}, the guest is {guestCid}");
        }

        if (header.DestinationCid != VsockLimits.HostCid)
        {
            throw new VsockPacketException(VsockPacketError.WrongDestination, header, $"packet to CID {header.DestinationCid}");
        }

        if (header.Type != VsockLimits.StreamType)
        {
            throw new VsockPacketException(VsockPacketError.UnsupportedType, header, $"packet of type {header.Type}");
        }

        if (header.Op is < VsockOp.Request or > VsockOp.CreditRequest)
        {
            throw new VsockPacketException(VsockPacketError.UnknownOp, header, $"packet with op {(ushort)header.Op}");
        }

        var available = chain.ReadableLength - VsockLimits.HeaderSize;
        if (header.Length > VsockLimits.MaxPacketPayload || header.Length > available)
        {
            throw new VsockPacketException(VsockPacketError.BadLength, header, $"payload of {header.Length} bytes in a buffer of {available}");
        }

        if (header.Op != VsockOp.ReadWrite && header.Length != 0)
        {
            throw new VsockPacketException(VsockPacketError.BadLength, header, $"{header.Op} with {header.Length} payload bytes");
        }

        return header;
    }
}
