using System.Buffers.Binary;
using System.Text;

namespace Lkrun.Services.Tests.Metadata;

/// <summary>
/// A small ISO 9660 reader written from ECMA-119, SUSP and RRIP for these tests, sharing no code with the writer.
/// It reads every number recorded in both byte orders from both halves and fails when they differ.
/// </summary>
internal sealed class IsoReader
{
    public const int SectorSize = 2048;

    private readonly byte[] _image;

    public IsoReader(byte[] image)
    {
        _image = image;
        var descriptors = new List<VolumeDescriptor>();
        for (var sector = 16; ; sector++)
        {
            var bytes = Sector(sector);
            if (Encoding.ASCII.GetString(bytes.Slice(1, 5)) != "CD001" || bytes[6] != 1)
            {
                throw new InvalidDataException($"sector {sector} is not a volume descriptor");
            }
            if (bytes[0] == 255)
            {
                TerminatorSector = sector;
                break;
            }
            descriptors.Add(VolumeDescriptor.Parse(bytes, sector));
        }
        Descriptors = descriptors;
    }

    public IReadOnlyList<VolumeDescriptor> Descriptors { get; }

    public int TerminatorSector { get; }

    public VolumeDescriptor Primary => Descriptors.Single(d => d.Type == 1);

    public VolumeDescriptor Joliet => Descriptors.Single(d => d.Type == 2 && d.EscapeSequences.StartsWith("%/", StringComparison.Ordinal));

    public ReadOnlySpan<byte> Sector(long sector) => _image.AsSpan(checked((int)(sector * SectorSize)), SectorSize);

    /// <summary>The records of a directory, each checked not to cross a sector boundary.</summary>
    public IReadOnlyList<DirectoryRecord> ReadDirectory(DirectoryRecord directory)
    {
        if (!directory.IsDirectory || directory.DataLength % SectorSize != 0)
        {
            throw new InvalidDataException("not a directory of whole sectors");
        }
        var records = new List<DirectoryRecord>();
        for (long sector = directory.Extent; sector < directory.Extent + directory.DataLength / SectorSize; sector++)
        {
            var bytes = Sector(sector);
            for (var offset = 0; offset < SectorSize && bytes[offset] != 0;)
            {
                var length = bytes[offset];
                if (offset + length > SectorSize)
                {
                    throw new InvalidDataException($"record at {sector}:{offset} crosses the sector boundary");
                }
                records.Add(DirectoryRecord.Parse(bytes.Slice(offset, length)));
                offset += length;
            }
        }
        return records;
    }

    public byte[] ReadFile(DirectoryRecord file) =>
        _image.AsSpan(checked((int)((long)file.Extent * SectorSize)), checked((int)file.DataLength)).ToArray();

    /// <summary>SUSP entries of a record, following CE continuation areas.</summary>
    public IReadOnlyList<SuspEntry> SystemUseEntries(DirectoryRecord record)
    {
        var entries = new List<SuspEntry>();
        byte[]? area = record.SystemUse;
        for (var continuations = 0; area is not null; continuations++)
        {
            if (continuations > 8)
            {
                throw new InvalidDataException("continuation loop");
            }
            var next = (byte[]?)null;
            for (var offset = 0; offset + 4 <= area.Length;)
            {
                var length = area[offset + 2];
                if (length < 4 || offset + length > area.Length)
                {
                    throw new InvalidDataException($"SUSP entry of length {length} at {offset} overruns its area of {area.Length}");
                }
                var entry = new SuspEntry(Encoding.ASCII.GetString(area, offset, 2), area[offset + 3], area.AsSpan(offset, length).ToArray());
                entries.Add(entry);
                if (entry.Signature == "CE")
                {
                    var sector = Both32(entry.Bytes.AsSpan(4));
                    var start = Both32(entry.Bytes.AsSpan(12));
                    var size = Both32(entry.Bytes.AsSpan(20));
                    if (start + size > SectorSize)
                    {
                        throw new InvalidDataException("continuation area crosses its sector");
                    }
                    next = Sector(sector).Slice((int)start, (int)size).ToArray();
                }
                if (entry.Signature == "ST")
                {
                    break;
                }
                offset += length;
            }
            area = next;
        }
        return entries;
    }

    /// <summary>The Rock Ridge name of a record (NM entries joined), or null when it has none.</summary>
    public string? RockRidgeName(DirectoryRecord record)
    {
        var parts = SystemUseEntries(record).Where(e => e.Signature == "NM").ToList();
        return parts.Count == 0 ? null : string.Concat(parts.Select(p => Encoding.UTF8.GetString(p.Bytes, 5, p.Bytes.Length - 5)));
    }

    /// <summary>The files of the root directory by their Rock Ridge names.</summary>
    public IReadOnlyDictionary<string, DirectoryRecord> RockRidgeFiles() =>
        ReadDirectory(Primary.Root).Where(r => !r.IsSelfOrParent).ToDictionary(r => RockRidgeName(r) ?? throw new InvalidDataException("file without NM"));

    /// <summary>The files of the Joliet root directory by their UCS-2 names.</summary>
    public IReadOnlyDictionary<string, DirectoryRecord> JolietFiles() =>
        ReadDirectory(Joliet.Root).Where(r => !r.IsSelfOrParent).ToDictionary(r => Encoding.BigEndianUnicode.GetString(r.Identifier));

    public static ushort Both16(ReadOnlySpan<byte> field)
    {
        var little = BinaryPrimitives.ReadUInt16LittleEndian(field);
        var big = BinaryPrimitives.ReadUInt16BigEndian(field[2..]);
        return little == big ? little : throw new InvalidDataException($"both-byte-order field differs: {little} little-endian, {big} big-endian");
    }

    public static uint Both32(ReadOnlySpan<byte> field)
    {
        var little = BinaryPrimitives.ReadUInt32LittleEndian(field);
        var big = BinaryPrimitives.ReadUInt32BigEndian(field[4..]);
        return little == big ? little : throw new InvalidDataException($"both-byte-order field differs: {little} little-endian, {big} big-endian");
    }
}

internal sealed record VolumeDescriptor(
    int Sector,
    byte Type,
    byte[] SystemIdentifier,
    byte[] VolumeIdentifier,
    uint VolumeSpaceSize,
    string EscapeSequences,
    ushort VolumeSetSize,
    ushort VolumeSequenceNumber,
    ushort LogicalBlockSize,
    uint PathTableSize,
    uint PathTableL,
    uint PathTableOptionalL,
    uint PathTableM,
    uint PathTableOptionalM,
    DirectoryRecord Root,
    byte[] ApplicationIdentifier,
    byte[] CreationDate,
    byte[] ModificationDate,
    byte[] ExpirationDate,
    byte[] EffectiveDate,
    byte FileStructureVersion,
    byte[] Raw)
{
    public static VolumeDescriptor Parse(ReadOnlySpan<byte> b, int sector) => new(
        sector,
        b[0],
        b.Slice(8, 32).ToArray(),
        b.Slice(40, 32).ToArray(),
        IsoReader.Both32(b[80..]),
        Encoding.ASCII.GetString(b.Slice(88, 32)).TrimEnd('\0'),
        IsoReader.Both16(b[120..]),
        IsoReader.Both16(b[124..]),
        IsoReader.Both16(b[128..]),
        IsoReader.Both32(b[132..]),
        BinaryPrimitives.ReadUInt32LittleEndian(b[140..]),
        BinaryPrimitives.ReadUInt32LittleEndian(b[144..]),
        BinaryPrimitives.ReadUInt32BigEndian(b[148..]),
        BinaryPrimitives.ReadUInt32BigEndian(b[152..]),
        DirectoryRecord.Parse(b.Slice(156, 34)),
        b.Slice(574, 128).ToArray(),
        b.Slice(813, 17).ToArray(),
        b.Slice(830, 17).ToArray(),
        b.Slice(847, 17).ToArray(),
        b.Slice(864, 17).ToArray(),
        b[881],
        b.ToArray());
}

internal sealed record DirectoryRecord(
    int Length,
    byte ExtendedAttributeLength,
    uint Extent,
    uint DataLength,
    byte[] RecordingDate,
    byte Flags,
    ushort VolumeSequenceNumber,
    byte[] Identifier,
    byte[] SystemUse)
{
    public bool IsDirectory => (Flags & 0x02) != 0;

    public bool IsSelfOrParent => Identifier is [0] or [1];

    public static DirectoryRecord Parse(ReadOnlySpan<byte> b)
    {
        if (b.Length < 34 || b[0] != b.Length)
        {
            throw new InvalidDataException($"directory record of {b.Length} bytes says it has {b[0]}");
        }
        var identifierLength = b[32];
        var systemUseStart = 33 + identifierLength + (identifierLength % 2 == 0 ? 1 : 0);
        if (systemUseStart > b.Length)
        {
            throw new InvalidDataException("identifier overruns its record");
        }
        return new DirectoryRecord(
            b[0],
            b[1],
            IsoReader.Both32(b[2..]),
            IsoReader.Both32(b[10..]),
            b.Slice(18, 7).ToArray(),
            b[25],
            IsoReader.Both16(b[28..]),
            b.Slice(33, identifierLength).ToArray(),
            b[systemUseStart..].ToArray());
    }
}

internal sealed record SuspEntry(string Signature, byte Version, byte[] Bytes);
