using System.Buffers.Binary;

namespace Lkrun.Services.Boot;

/// <summary>
/// The setup header of an x86 bzImage (Linux boot protocol, Documentation/arch/x86/boot.rst). A bzImage is the
/// real-mode setup code, (setup_sects + 1) sectors of 512 bytes, followed by the protected-mode code: a small
/// decompressor carrying the compressed kernel ELF as its payload. From protocol 2.08 on, the header says where
/// that payload lies (payload_offset, counted from the start of the protected-mode code, and payload_length).
/// Every payload ends with the decompressed size as 4 little-endian bytes (gzip's own ISIZE, or appended by the
/// kernel build for the other formats).
/// </summary>
/// <param name="ProtocolVersion">The boot protocol version, e.g. 0x020f.</param>
/// <param name="PayloadStart">Where the compressed payload starts, counted from the start of the file.</param>
/// <param name="PayloadLength">The payload's length in bytes, size trailer included.</param>
/// <param name="InitSize">The memory the kernel needs from its load address on (protocol 2.10 and later; 0 before).</param>
public readonly record struct BzImageHeader(ushort ProtocolVersion, int PayloadStart, int PayloadLength, uint InitSize)
{
    private const int SectorSize = 512;
    private const int SetupSectorsOffset = 0x1f1;
    private const int BootFlagOffset = 0x1fe;
    private const ushort BootFlag = 0xaa55;
    private const int MagicOffset = 0x202;
    private const uint Magic = 0x53726448; // "HdrS"
    private const int VersionOffset = 0x206;
    private const int PayloadOffsetOffset = 0x248;
    private const int PayloadLengthOffset = 0x24c;
    private const int InitSizeOffset = 0x260;

    /// <summary>The first protocol with payload_offset and payload_length.</summary>
    public const ushort MinimumVersion = 0x0208;

    private const ushort InitSizeVersion = 0x020a;

    /// <summary>The header, up to the end of the fields read here.</summary>
    public const int MinimumLength = InitSizeOffset + 4;

    /// <summary>Whether <paramref name="image"/> starts like a bzImage: the boot flag and the "HdrS" magic.</summary>
    public static bool HasSignature(ReadOnlySpan<byte> image) =>
        image.Length >= MagicOffset + 4 &&
        BinaryPrimitives.ReadUInt16LittleEndian(image[BootFlagOffset..]) == BootFlag &&
        BinaryPrimitives.ReadUInt32LittleEndian(image[MagicOffset..]) == Magic;

    /// <summary>
    /// Reads the header of a whole bzImage and checks that the payload lies inside it. Pure: reads nothing
    /// outside <paramref name="image"/>, allocates nothing; throws <see cref="KernelImageException"/> for
    /// anything else than a bzImage whose payload it can locate.
    /// </summary>
    public static BzImageHeader Parse(ReadOnlySpan<byte> image)
    {
        if (!HasSignature(image))
        {
            throw new KernelImageException("not a bzImage (no boot flag or HdrS magic)");
        }
        // Any bzImage is longer: its setup code alone takes at least five sectors.
        if (image.Length < MinimumLength)
        {
            throw new KernelImageException($"the setup header is cut short ({image.Length} bytes)");
        }
        var version = BinaryPrimitives.ReadUInt16LittleEndian(image[VersionOffset..]);
        if (version < MinimumVersion)
        {
            throw new KernelImageException($"boot protocol {version >> 8}.{version & 0xff:D2} is older than 2.08 and does not locate its payload");
        }
        // Protocol: a setup_sects of 0 means 4.
        var setupSectors = image[SetupSectorsOffset] == 0 ? 4 : image[SetupSectorsOffset];
        var setupLength = (setupSectors + 1) * SectorSize;
        var payloadOffset = BinaryPrimitives.ReadUInt32LittleEndian(image[PayloadOffsetOffset..]);
        var payloadLength = BinaryPrimitives.ReadUInt32LittleEndian(image[PayloadLengthOffset..]);
        // 64-bit sums cannot overflow for 32-bit fields.
        var payloadEnd = (long)setupLength + payloadOffset + payloadLength;
        if (payloadLength < 4 || payloadEnd > image.Length)
        {
            throw new KernelImageException(
                $"the payload ({payloadLength} bytes at {setupLength + (long)payloadOffset}) does not fit in the {image.Length}-byte image");
        }
        var initSize = version >= InitSizeVersion ? BinaryPrimitives.ReadUInt32LittleEndian(image[InitSizeOffset..]) : 0;
        return new BzImageHeader(version, (int)(setupLength + payloadOffset), (int)payloadLength, initSize);
    }

    public Range Payload => PayloadStart..(PayloadStart + PayloadLength);
}
