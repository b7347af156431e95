using System.Buffers.Binary;

namespace Lkrun.Services.VhostUser;

/// <summary>Request codes of QEMU's docs/interop/vhost-user.rst (front-end to back-end).</summary>
internal enum VhostUserRequest : uint
{
    GetFeatures = 1,
    SetFeatures = 2,
    SetOwner = 3,
    ResetOwner = 4,
    SetMemTable = 5,
    SetLogBase = 6,
    SetLogFd = 7,
    SetVringNum = 8,
    SetVringAddr = 9,
    SetVringBase = 10,
    GetVringBase = 11,
    SetVringKick = 12,
    SetVringCall = 13,
    SetVringErr = 14,
    GetProtocolFeatures = 15,
    SetProtocolFeatures = 16,
    GetQueueNum = 17,
    SetVringEnable = 18,
    GetConfig = 24,
    SetConfig = 25,
    ResetDevice = 34,
}

/// <summary>The 12-byte header: request, flags (version 1, reply, need-reply) and body size.</summary>
internal readonly record struct VhostUserHeader(VhostUserRequest Request, uint Flags, uint Size)
{
    public const int Length = 12;
    public const uint Version = 0x1;
    public const uint VersionMask = 0x3;
    public const uint ReplyFlag = 0x4;
    public const uint NeedReplyFlag = 0x8;

    public bool NeedsReply => (Flags & NeedReplyFlag) != 0;

    /// <summary>Reads a header sent by the front-end; wrong versions, replies and oversized bodies are rejected.</summary>
    public static VhostUserHeader Parse(ReadOnlySpan<byte> bytes)
    {
        if (bytes.Length != Length)
        {
            throw new VhostUserProtocolException($"header of {bytes.Length} bytes, expected {Length}");
        }

        var header = new VhostUserHeader(
            (VhostUserRequest)BinaryPrimitives.ReadUInt32LittleEndian(bytes),
            BinaryPrimitives.ReadUInt32LittleEndian(bytes[4..]),
            BinaryPrimitives.ReadUInt32LittleEndian(bytes[8..]));
        if ((header.Flags & VersionMask) != Version)
        {
            throw new VhostUserProtocolException($"protocol version {header.Flags & VersionMask}, expected {Version}");
        }

        if ((header.Flags & ReplyFlag) != 0)
        {
            throw new VhostUserProtocolException($"request {header.Request} carries the reply flag");
        }

        if (header.Size > VhostUserLimits.MaxBodySize)
        {
            throw new VhostUserProtocolException($"request {header.Request} body of {header.Size} bytes, at most {VhostUserLimits.MaxBodySize}");
        }

        return header;
    }

    /// <summary>Writes the header of the reply to this request, with a body of <paramref name="bodySize"/> bytes.</summary>
    public void WriteReply(Span<byte> destination, int bodySize)
    {
        BinaryPrimitives.WriteUInt32LittleEndian(destination, (uint)Request);
        BinaryPrimitives.WriteUInt32LittleEndian(destination[4..], Version | ReplyFlag);
        BinaryPrimitives.WriteUInt32LittleEndian(destination[8..], (uint)bodySize);
    }
}

/// <summary>Body parsers; each checks the exact size of its body.</summary>
internal static class VhostUserBody
{
    public static ulong ReadU64(VhostUserRequest request, ReadOnlySpan<byte> body)
    {
        ExpectSize(request, body, sizeof(ulong));
        return BinaryPrimitives.ReadUInt64LittleEndian(body);
    }

    public static void ExpectEmpty(VhostUserRequest request, ReadOnlySpan<byte> body) => ExpectSize(request, body, 0);

    public static void ExpectSize(VhostUserRequest request, ReadOnlySpan<byte> body, int size)
    {
        if (body.Length != size)
        {
            throw new VhostUserProtocolException($"{request} body of {body.Length} bytes, expected {size}");
        }
    }
}

/// <summary>A ring index and a number (its size, its next available index, or enable 0/1).</summary>
internal readonly record struct VringState(uint Index, uint Number)
{
    public const int Length = 8;

    public static VringState Parse(VhostUserRequest request, ReadOnlySpan<byte> body)
    {
        VhostUserBody.ExpectSize(request, body, Length);
        return new VringState(BinaryPrimitives.ReadUInt32LittleEndian(body), BinaryPrimitives.ReadUInt32LittleEndian(body[4..]));
    }

    public void Write(Span<byte> destination)
    {
        BinaryPrimitives.WriteUInt32LittleEndian(destination, Index);
        BinaryPrimitives.WriteUInt32LittleEndian(destination[4..], Number);
    }
}

/// <summary>Where a ring's three parts are, as front-end (user) addresses.</summary>
internal readonly record struct VringAddress(uint Index, uint Flags, ulong DescriptorTable, ulong UsedRing, ulong AvailableRing, ulong LogAddress)
{
    public const int Length = 40;

    /// <summary>VHOST_VRING_F_LOG: log used-ring writes; only meaningful with VHOST_F_LOG_ALL, which is never offered.</summary>
    public const uint LogFlag = 0x1;

    public static VringAddress Parse(ReadOnlySpan<byte> body)
    {
        VhostUserBody.ExpectSize(VhostUserRequest.SetVringAddr, body, Length);
        var address = new VringAddress(
            BinaryPrimitives.ReadUInt32LittleEndian(body),
            BinaryPrimitives.ReadUInt32LittleEndian(body[4..]),
            BinaryPrimitives.ReadUInt64LittleEndian(body[8..]),
            BinaryPrimitives.ReadUInt64LittleEndian(body[16..]),
            BinaryPrimitives.ReadUInt64LittleEndian(body[24..]),
            BinaryPrimitives.ReadUInt64LittleEndian(body[32..]));
        if ((address.Flags & ~LogFlag) != 0)
        {
            throw new VhostUserProtocolException($"SetVringAddr flags 0x{address.Flags:x} unknown");
        }

        return address;
    }
}

/// <summary>
/// The u64 of SET_VRING_KICK, _CALL and _ERR: ring index in bits 0-7, bit 8 set when no descriptor is passed.
/// </summary>
internal readonly record struct VringDescriptorNotice(uint Index, bool HasDescriptor)
{
    private const ulong IndexMask = 0xff;
    private const ulong NoDescriptorFlag = 0x100;

    public static VringDescriptorNotice Parse(VhostUserRequest request, ReadOnlySpan<byte> body)
    {
        var value = VhostUserBody.ReadU64(request, body);
        if ((value & ~(IndexMask | NoDescriptorFlag)) != 0)
        {
            throw new VhostUserProtocolException($"{request} value 0x{value:x} has unknown bits");
        }

        return new VringDescriptorNotice((uint)(value & IndexMask), (value & NoDescriptorFlag) == 0);
    }
}

/// <summary>One region of SET_MEM_TABLE: guest-physical range, the front-end's address of it, offset in its fd.</summary>
internal readonly record struct MemoryRegionDescription(ulong GuestAddress, ulong Size, ulong UserAddress, ulong MmapOffset)
{
    public const int Length = 32;

    /// <summary>The memory table: a count, padding, then the regions; exactly as many as the count.</summary>
    public static MemoryRegionDescription[] ParseTable(ReadOnlySpan<byte> body)
    {
        if (body.Length < 8)
        {
            throw new VhostUserProtocolException($"SetMemTable body of {body.Length} bytes, expected at least 8");
        }

        var count = BinaryPrimitives.ReadUInt32LittleEndian(body);
        if (count == 0 || count > VhostUserLimits.MaxMemoryRegions)
        {
            throw new VhostUserProtocolException($"SetMemTable with {count} regions, expected 1 to {VhostUserLimits.MaxMemoryRegions}");
        }

        VhostUserBody.ExpectSize(VhostUserRequest.SetMemTable, body, 8 + (int)count * Length);
        var regions = new MemoryRegionDescription[count];
        for (var i = 0; i < regions.Length; i++)
        {
            var entry = body.Slice(8 + i * Length, Length);
            regions[i] = new MemoryRegionDescription(
                BinaryPrimitives.ReadUInt64LittleEndian(entry),
                BinaryPrimitives.ReadUInt64LittleEndian(entry[8..]),
                BinaryPrimitives.ReadUInt64LittleEndian(entry[16..]),
                BinaryPrimitives.ReadUInt64LittleEndian(entry[24..]));
        }

        return regions;
    }
}

/// <summary>The header of GET_CONFIG and SET_CONFIG: offset, size and flags, followed by size payload bytes.</summary>
internal readonly record struct ConfigAccess(uint Offset, uint Size, uint Flags)
{
    public const int HeaderLength = 12;

    public static ConfigAccess Parse(VhostUserRequest request, ReadOnlySpan<byte> body)
    {
        if (body.Length < HeaderLength)
        {
            throw new VhostUserProtocolException($"{request} body of {body.Length} bytes, expected at least {HeaderLength}");
        }

        var access = new ConfigAccess(
            BinaryPrimitives.ReadUInt32LittleEndian(body),
            BinaryPrimitives.ReadUInt32LittleEndian(body[4..]),
            BinaryPrimitives.ReadUInt32LittleEndian(body[8..]));
        if (access.Size > VhostUserLimits.MaxConfigSize)
        {
            throw new VhostUserProtocolException($"{request} of {access.Size} bytes, at most {VhostUserLimits.MaxConfigSize}");
        }

        VhostUserBody.ExpectSize(request, body, HeaderLength + (int)access.Size);
        return access;
    }

    public void WriteHeader(Span<byte> destination, uint size)
    {
        BinaryPrimitives.WriteUInt32LittleEndian(destination, Offset);
        BinaryPrimitives.WriteUInt32LittleEndian(destination[4..], size);
        BinaryPrimitives.WriteUInt32LittleEndian(destination[8..], Flags);
    }
}
