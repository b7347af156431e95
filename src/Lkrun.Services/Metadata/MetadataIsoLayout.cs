using System.Buffers.Binary;
using System.Text;
using static Lkrun.Services.Metadata.Ecma119;

namespace Lkrun.Services.Metadata;

/// <summary>
/// Where everything sits in a metadata image, and the bytes of every sector before the user data.
/// </summary>
/// <remarks>
/// Sectors are 2048 bytes. Everything but the user data fits in fixed sectors ahead of it, so an image is written in
/// one pass: this header, the user data as it streams in, zeros up to the end of the volume.
/// <code>
///  0-15  system area, zeros
///  16    primary volume descriptor: ISO 9660 names, Rock Ridge entries in the directory records
///  17    Joliet supplementary volume descriptor: UCS-2 names
///  18    volume descriptor set terminator
///  19-20 primary path table, type L (little-endian) then type M (big-endian)
///  21-22 Joliet path table, type L then type M
///  23    primary root directory
///  24    Rock Ridge continuation area (the ER entry)
///  25    Joliet root directory
///  26    meta-data
///  27-   user data: one extent that both config and user-data point at, then zeros up to at least
///        <see cref="MinimumVolumeSectors"/>
/// </code>
/// The ISO 9660 names (CONFIG.;1, META_DATA.;1, USER_DATA.;1) follow interchange level 2 for readers that know
/// neither extension; Rock Ridge and Joliet readers see config, meta-data and user-data.
/// </remarks>
internal static class MetadataIsoLayout
{
    public const uint PrimaryVolumeDescriptorSector = 16;
    public const uint JolietVolumeDescriptorSector = 17;
    public const uint TerminatorSector = 18;
    public const uint PrimaryPathTableLSector = 19;
    public const uint PrimaryPathTableMSector = 20;
    public const uint JolietPathTableLSector = 21;
    public const uint JolietPathTableMSector = 22;
    public const uint PrimaryRootSector = 23;
    public const uint ContinuationSector = 24;
    public const uint JolietRootSector = 25;
    public const uint MetaDataSector = 26;
    public const uint UserDataSector = 27;

    public const int HeaderLength = (int)UserDataSector * SectorSize;

    /// <summary>
    /// Small images are padded to 128 KiB: busybox's findfs and blkid read 68 KiB from a device before they probe
    /// it for ISO 9660, and find no label on anything shorter.
    /// </summary>
    public const uint MinimumVolumeSectors = 64;

    /// <summary>A path table holding only the root: a 9-byte record padded to an even length.</summary>
    private const int PathTableLength = 10;

    private const int RootRecordLength = 34;

    public static long SectorsFor(long length) => (length + SectorSize - 1) / SectorSize;

    public static long VolumeSectors(long userDataLength) => Math.Max(UserDataSector + SectorsFor(userDataLength), MinimumVolumeSectors);

    public static long ImageLength(long userDataLength) => VolumeSectors(userDataLength) * SectorSize;

    public static byte[] MetaData(Guid instanceId) => Encoding.ASCII.GetBytes($"instance-id: {instanceId:D}\n");

    public static byte[] BuildHeader(long userDataLength, Guid instanceId, DateTimeOffset recordedAt)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(userDataLength);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(userDataLength, uint.MaxValue);

        var header = new byte[HeaderLength];
        var volumeSpaceSize = checked((uint)VolumeSectors(userDataLength));
        var metaData = MetaData(instanceId);
        var files = new (string Name, uint Extent, uint Length)[]
        {
            ("config", UserDataSector, (uint)userDataLength),
            ("meta-data", MetaDataSector, (uint)metaData.Length),
            ("user-data", UserDataSector, (uint)userDataLength),
        };

        WriteVolumeDescriptor(Sector(header, PrimaryVolumeDescriptorSector), joliet: false, volumeSpaceSize, PrimaryPathTableLSector, PrimaryPathTableMSector, PrimaryRootSector, recordedAt);
        WriteVolumeDescriptor(Sector(header, JolietVolumeDescriptorSector), joliet: true, volumeSpaceSize, JolietPathTableLSector, JolietPathTableMSector, JolietRootSector, recordedAt);
        WriteTerminator(Sector(header, TerminatorSector));

        WritePathTable(Sector(header, PrimaryPathTableLSector), PrimaryRootSector, bigEndian: false);
        WritePathTable(Sector(header, PrimaryPathTableMSector), PrimaryRootSector, bigEndian: true);
        WritePathTable(Sector(header, JolietPathTableLSector), JolietRootSector, bigEndian: false);
        WritePathTable(Sector(header, JolietPathTableMSector), JolietRootSector, bigEndian: true);

        var extensionsReference = RockRidge.ExtensionsReference();
        extensionsReference.CopyTo(Sector(header, ContinuationSector));

        var primaryRoot = Sector(header, PrimaryRootSector);
        var offset = WriteRecord(primaryRoot, 0, [0], PrimaryRootSector, SectorSize, isDirectory: true, RockRidge.RootSelf(ContinuationSector, extensionsReference.Length), recordedAt);
        offset = WriteRecord(primaryRoot, offset, [1], PrimaryRootSector, SectorSize, isDirectory: true, RockRidge.Directory(), recordedAt);
        foreach (var (name, extent, length) in files)
        {
            offset = WriteRecord(primaryRoot, offset, PrimaryIdentifier(name), extent, length, isDirectory: false, RockRidge.File(name), recordedAt);
        }

        var jolietRoot = Sector(header, JolietRootSector);
        offset = WriteRecord(jolietRoot, 0, [0], JolietRootSector, SectorSize, isDirectory: true, [], recordedAt);
        offset = WriteRecord(jolietRoot, offset, [1], JolietRootSector, SectorSize, isDirectory: true, [], recordedAt);
        foreach (var (name, extent, length) in files)
        {
            offset = WriteRecord(jolietRoot, offset, Encoding.BigEndianUnicode.GetBytes(name), extent, length, isDirectory: false, [], recordedAt);
        }

        metaData.CopyTo(Sector(header, MetaDataSector));
        return header;
    }

    /// <summary>
    /// The level 2 identifier of a file: upper case, d-characters only (the dash becomes an underscore), an empty
    /// extension and version 1. The files' names sort the same way in this form as they do written out.
    /// </summary>
    private static byte[] PrimaryIdentifier(string name) =>
        Encoding.ASCII.GetBytes(name.ToUpperInvariant().Replace('-', '_') + ".;1");

    private static Span<byte> Sector(byte[] image, uint sector) => image.AsSpan((int)sector * SectorSize, SectorSize);

    /// <summary>8.4: a primary (type 1) or Joliet supplementary (type 2) volume descriptor.</summary>
    private static void WriteVolumeDescriptor(Span<byte> sector, bool joliet, uint volumeSpaceSize, uint pathTableL, uint pathTableM, uint rootSector, DateTimeOffset recordedAt)
    {
        WriteDescriptorHeader(sector, joliet ? (byte)2 : (byte)1);
        WriteIdentifier(sector.Slice(8, 32), joliet, "");
        WriteIdentifier(sector.Slice(40, 32), joliet, MetadataIso.VolumeLabel);
        WriteBothByteOrders(sector[80..], volumeSpaceSize);
        if (joliet)
        {
            // UCS-2 level 3: "%/E".
            sector[88] = 0x25;
            sector[89] = 0x2F;
            sector[90] = 0x45;
        }
        WriteBothByteOrders(sector[120..], (ushort)1); // volume set size
        WriteBothByteOrders(sector[124..], (ushort)1); // volume sequence number
        WriteBothByteOrders(sector[128..], (ushort)SectorSize);
        WriteBothByteOrders(sector[132..], (uint)PathTableLength);
        BinaryPrimitives.WriteUInt32LittleEndian(sector[140..], pathTableL);
        BinaryPrimitives.WriteUInt32BigEndian(sector[148..], pathTableM);
        WriteRecord(sector.Slice(156, RootRecordLength), 0, [0], rootSector, SectorSize, isDirectory: true, [], recordedAt);
        WriteIdentifier(sector.Slice(190, 128), joliet, ""); // volume set
        WriteIdentifier(sector.Slice(318, 128), joliet, ""); // publisher
        WriteIdentifier(sector.Slice(446, 128), joliet, ""); // data preparer
        WriteIdentifier(sector.Slice(574, 128), joliet, "LKRUN"); // application
        WriteIdentifier(sector.Slice(702, 37), joliet, ""); // copyright file
        WriteIdentifier(sector.Slice(739, 37), joliet, ""); // abstract file
        WriteIdentifier(sector.Slice(776, 37), joliet, ""); // bibliographic file
        WriteVolumeDate(sector.Slice(813, 17), recordedAt); // creation
        WriteVolumeDate(sector.Slice(830, 17), recordedAt); // modification
        WriteUnspecifiedVolumeDate(sector.Slice(847, 17)); // expiration
        WriteUnspecifiedVolumeDate(sector.Slice(864, 17)); // effective
        sector[881] = 1; // file structure version
    }

    private static void WriteIdentifier(Span<byte> field, bool joliet, string text)
    {
        if (joliet)
        {
            WriteUcs2Text(field, text);
        }
        else
        {
            WriteText(field, text);
        }
    }

    private static void WriteTerminator(Span<byte> sector) => WriteDescriptorHeader(sector, 255);

    private static void WriteDescriptorHeader(Span<byte> sector, byte type)
    {
        sector[0] = type;
        "CD001"u8.CopyTo(sector[1..]);
        sector[6] = 1; // descriptor version
    }

    /// <summary>9.4: a path table of the root alone, its numbers in one byte order.</summary>
    private static void WritePathTable(Span<byte> sector, uint rootSector, bool bigEndian)
    {
        sector[0] = 1; // identifier length
        sector[1] = 0; // extended attribute record length
        if (bigEndian)
        {
            BinaryPrimitives.WriteUInt32BigEndian(sector[2..], rootSector);
            BinaryPrimitives.WriteUInt16BigEndian(sector[6..], 1); // parent: the root itself
        }
        else
        {
            BinaryPrimitives.WriteUInt32LittleEndian(sector[2..], rootSector);
            BinaryPrimitives.WriteUInt16LittleEndian(sector[6..], 1);
        }
        sector[8] = 0; // the root's identifier
    }

    /// <summary>
    /// 9.1: one directory record at <paramref name="offset"/> of a one-sector directory; returns where the next
    /// record starts. A padding byte follows an identifier of even length, and another ends an odd-length record.
    /// </summary>
    private static int WriteRecord(Span<byte> directory, int offset, ReadOnlySpan<byte> identifier, uint extent, uint length, bool isDirectory, ReadOnlySpan<byte> systemUse, DateTimeOffset recordedAt)
    {
        var systemUseStart = 33 + identifier.Length + (identifier.Length % 2 == 0 ? 1 : 0);
        var recordLength = systemUseStart + systemUse.Length;
        recordLength += recordLength % 2;
        if (recordLength > byte.MaxValue || offset + recordLength > directory.Length)
        {
            throw new InvalidOperationException($"a directory record of {recordLength} bytes does not fit at offset {offset}");
        }

        var record = directory.Slice(offset, recordLength);
        record.Clear();
        record[0] = (byte)recordLength;
        record[1] = 0; // extended attribute record length
        WriteBothByteOrders(record[2..], extent);
        WriteBothByteOrders(record[10..], length);
        WriteRecordingDate(record[18..], recordedAt);
        record[25] = isDirectory ? (byte)0x02 : (byte)0x00;
        WriteBothByteOrders(record[28..], (ushort)1); // volume sequence number
        record[32] = (byte)identifier.Length;
        identifier.CopyTo(record[33..]);
        systemUse.CopyTo(record[systemUseStart..]);
        return offset + recordLength;
    }
}
