using System.Buffers.Binary;
using System.Globalization;
using System.Text;
using Lkrun.Services.Metadata;

namespace Lkrun.Services.Tests.Metadata;

public sealed class MetadataIsoStructureTests
{
    private static readonly Guid InstanceId = Guid.Parse("6F9619FF-8B86-D011-B42D-00C04FC964FF");
    private static readonly byte[] UserData = Encoding.UTF8.GetBytes("{\"hostname\": \"lkrun\"}\n");

    private readonly DateTimeOffset _before = DateTimeOffset.UtcNow;
    private readonly byte[] _image;
    private readonly DateTimeOffset _after;
    private readonly IsoReader _iso;

    public MetadataIsoStructureTests()
    {
        _image = Image(UserData, InstanceId);
        _after = DateTimeOffset.UtcNow;
        _iso = new IsoReader(_image);
    }

    [Fact]
    public void System_area_is_sixteen_sectors_of_zeros()
    {
        Assert.All(_image.AsSpan(0, 16 * IsoReader.SectorSize).ToArray(), b => Assert.Equal(0, b));
    }

    [Fact]
    public void Descriptors_are_primary_then_joliet_then_terminator()
    {
        Assert.Equal([1, 2], _iso.Descriptors.Select(d => (int)d.Type));
        Assert.Equal([16, 17], _iso.Descriptors.Select(d => d.Sector));
        Assert.Equal(18, _iso.TerminatorSector);
    }

    [Fact]
    public void Primary_descriptor_fields()
    {
        var pvd = _iso.Primary;
        Assert.Equal("CIDATA" + new string(' ', 26), Encoding.ASCII.GetString(pvd.VolumeIdentifier));
        Assert.Equal(new string(' ', 32), Encoding.ASCII.GetString(pvd.SystemIdentifier));
        Assert.Equal((uint)(_image.Length / IsoReader.SectorSize), pvd.VolumeSpaceSize);
        Assert.Equal("", pvd.EscapeSequences);
        Assert.Equal(1, pvd.VolumeSetSize);
        Assert.Equal(1, pvd.VolumeSequenceNumber);
        Assert.Equal(2048, pvd.LogicalBlockSize);
        Assert.Equal(1, pvd.FileStructureVersion);
        Assert.Equal("LKRUN", Encoding.ASCII.GetString(pvd.ApplicationIdentifier).TrimEnd(' '));
        Assert.Equal(0, pvd.Raw[7]);
        Assert.All(pvd.Raw[72..80], b => Assert.Equal(0, b));
        Assert.All(pvd.Raw[882..], b => Assert.Equal(0, b));
    }

    [Fact]
    public void Joliet_descriptor_declares_ucs2_level_3_with_the_same_label()
    {
        var svd = _iso.Joliet;
        Assert.Equal("%/E", svd.EscapeSequences);
        Assert.Equal("CIDATA" + new string(' ', 10), Encoding.BigEndianUnicode.GetString(svd.VolumeIdentifier));
        Assert.Equal(_iso.Primary.VolumeSpaceSize, svd.VolumeSpaceSize);
        Assert.Equal(2048, svd.LogicalBlockSize);
        Assert.Equal("LKRUN", Encoding.BigEndianUnicode.GetString(svd.ApplicationIdentifier).TrimEnd(' '));
        Assert.NotEqual(_iso.Primary.Root.Extent, svd.Root.Extent);
    }

    [Fact]
    public void Volume_dates_are_digits_of_the_writing_time_in_utc_and_the_unused_ones_unspecified()
    {
        foreach (var descriptor in _iso.Descriptors)
        {
            foreach (var date in new[] { descriptor.CreationDate, descriptor.ModificationDate })
            {
                Assert.All(date[..16], b => Assert.InRange(b, (byte)'0', (byte)'9'));
                Assert.Equal(0, date[16]);
                var time = DateTimeOffset.ParseExact(Encoding.ASCII.GetString(date, 0, 14), "yyyyMMddHHmmss", CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal);
                Assert.InRange(time, _before.AddSeconds(-1), _after);
            }
            Assert.Equal(Encoding.ASCII.GetBytes(new string('0', 16)).Append((byte)0), descriptor.ExpirationDate);
            Assert.Equal(Encoding.ASCII.GetBytes(new string('0', 16)).Append((byte)0), descriptor.EffectiveDate);
        }
    }

    [Fact]
    public void Root_record_in_each_descriptor_is_a_34_byte_directory_record()
    {
        foreach (var descriptor in _iso.Descriptors)
        {
            var root = descriptor.Root;
            Assert.Equal(34, root.Length);
            Assert.True(root.IsDirectory);
            Assert.Equal([0], root.Identifier);
            Assert.Equal((uint)IsoReader.SectorSize, root.DataLength);
            Assert.Equal(1, root.VolumeSequenceNumber);
            Assert.Empty(root.SystemUse);
        }
    }

    [Fact]
    public void Path_tables_hold_the_root_in_little_endian_type_L_and_big_endian_type_M()
    {
        foreach (var descriptor in _iso.Descriptors)
        {
            Assert.Equal(10u, descriptor.PathTableSize);
            Assert.Equal(0u, descriptor.PathTableOptionalL);
            Assert.Equal(0u, descriptor.PathTableOptionalM);
            var l = _iso.Sector(descriptor.PathTableL)[..10];
            var m = _iso.Sector(descriptor.PathTableM)[..10];
            foreach (var table in new[] { l.ToArray(), m.ToArray() })
            {
                Assert.Equal(1, table[0]); // identifier length
                Assert.Equal(0, table[1]); // extended attribute length
                Assert.Equal(0, table[8]); // the root's identifier
            }
            Assert.Equal(descriptor.Root.Extent, BinaryPrimitives.ReadUInt32LittleEndian(l[2..]));
            Assert.Equal(1, BinaryPrimitives.ReadUInt16LittleEndian(l[6..]));
            Assert.Equal(descriptor.Root.Extent, BinaryPrimitives.ReadUInt32BigEndian(m[2..]));
            Assert.Equal(1, BinaryPrimitives.ReadUInt16BigEndian(m[6..]));
        }
    }

    [Fact]
    public void Directory_records_are_even_sized_self_and_parent_first_then_sorted()
    {
        foreach (var descriptor in _iso.Descriptors)
        {
            var records = _iso.ReadDirectory(descriptor.Root);
            Assert.Equal(5, records.Count);
            Assert.All(records, r => Assert.Equal(0, r.Length % 2));
            Assert.All(records, r => Assert.Equal(0, r.ExtendedAttributeLength));
            Assert.All(records, r => Assert.Equal(1, r.VolumeSequenceNumber));
            Assert.Equal([0], records[0].Identifier);
            Assert.Equal([1], records[1].Identifier);
            Assert.All(records.Take(2), r => Assert.Equal(descriptor.Root.Extent, r.Extent));
            Assert.All(records.Take(2), r => Assert.True(r.IsDirectory));
            Assert.All(records.Skip(2), r => Assert.False(r.IsDirectory));
            var identifiers = records.Skip(2).Select(r => Convert.ToHexString(r.Identifier)).ToList();
            Assert.Equal(identifiers.Order(StringComparer.Ordinal), identifiers);
        }
    }

    [Fact]
    public void Recording_dates_are_the_writing_time_in_utc()
    {
        foreach (var record in _iso.ReadDirectory(_iso.Primary.Root).Concat(_iso.ReadDirectory(_iso.Joliet.Root)))
        {
            var d = record.RecordingDate;
            var time = new DateTimeOffset(1900 + d[0], d[1], d[2], d[3], d[4], d[5], TimeSpan.Zero);
            Assert.Equal(0, d[6]);
            Assert.InRange(time, _before.AddSeconds(-1), _after);
        }
    }

    [Fact]
    public void Primary_names_are_level_2_identifiers_with_version_1()
    {
        var names = _iso.ReadDirectory(_iso.Primary.Root).Skip(2).Select(r => Encoding.ASCII.GetString(r.Identifier));
        Assert.Equal(["CONFIG.;1", "META_DATA.;1", "USER_DATA.;1"], names);
    }

    [Fact]
    public void Rock_ridge_root_starts_with_SP_and_names_RRIP_1991A_through_a_continuation_area()
    {
        var self = _iso.ReadDirectory(_iso.Primary.Root)[0];
        Assert.Equal([(byte)'S', (byte)'P', 7, 1, 0xBE, 0xEF, 0], self.SystemUse[..7]);
        var entries = _iso.SystemUseEntries(self);
        // CE ends the record (go-diskfs follows it only there) and leads to ER.
        Assert.Equal(["SP", "RR", "PX", "CE", "ER"], entries.Select(e => e.Signature));
        Assert.All(entries, e => Assert.Equal(1, e.Version));
        var er = entries.Single(e => e.Signature == "ER").Bytes;
        Assert.Equal("RRIP_1991A", Encoding.ASCII.GetString(er, 8, er[4]));
        Assert.Equal(er.Length, 8 + er[4] + er[5] + er[6]);
        Assert.Equal(1, er[7]);
        Assert.True(self.Length <= 255);
    }

    [Fact]
    public void Rock_ridge_records_carry_RR_PX_and_for_files_NM()
    {
        var records = _iso.ReadDirectory(_iso.Primary.Root);
        foreach (var record in records)
        {
            var entries = _iso.SystemUseEntries(record);
            var rr = entries.Single(e => e.Signature == "RR").Bytes;
            var px = entries.Single(e => e.Signature == "PX").Bytes;
            Assert.Equal(36, px.Length);
            var mode = IsoReader.Both32(px.AsSpan(4));
            var links = IsoReader.Both32(px.AsSpan(12));
            Assert.Equal(0u, IsoReader.Both32(px.AsSpan(20)));
            Assert.Equal(0u, IsoReader.Both32(px.AsSpan(28)));
            if (record.IsDirectory)
            {
                Assert.Equal(0x4000u | 0x16D, mode); // directory, r-xr-xr-x
                Assert.Equal(2u, links);
                Assert.Equal(0x01, rr[4]);
                Assert.DoesNotContain(entries, e => e.Signature == "NM");
            }
            else
            {
                Assert.Equal(0x8000u | 0x124, mode); // regular file, r--r--r--
                Assert.Equal(1u, links);
                Assert.Equal(0x09, rr[4]);
                var nm = entries.Single(e => e.Signature == "NM").Bytes;
                Assert.Equal(0, nm[4]);
            }
        }
        Assert.Equal(["config", "meta-data", "user-data"], records.Skip(2).Select(r => _iso.RockRidgeName(r)));
    }

    [Fact]
    public void Joliet_names_are_ucs2_without_version()
    {
        var records = _iso.ReadDirectory(_iso.Joliet.Root);
        Assert.Equal(["config", "meta-data", "user-data"], records.Skip(2).Select(r => Encoding.BigEndianUnicode.GetString(r.Identifier)));
        Assert.All(records, r => Assert.Empty(r.SystemUse));
    }

    [Fact]
    public void Config_and_user_data_share_one_extent_after_meta_data()
    {
        foreach (var files in new[] { _iso.RockRidgeFiles(), _iso.JolietFiles() })
        {
            Assert.Equal(files["config"].Extent, files["user-data"].Extent);
            Assert.True(files["meta-data"].Extent < files["config"].Extent);
            Assert.Equal(UserData, _iso.ReadFile(files["config"]));
            Assert.Equal(UserData, _iso.ReadFile(files["user-data"]));
            Assert.Equal($"instance-id: 6f9619ff-8b86-d011-b42d-00c04fc964ff\n", Encoding.ASCII.GetString(_iso.ReadFile(files["meta-data"])));
        }
    }

    [Fact]
    public void Every_extent_lies_inside_the_volume()
    {
        var volumeSectors = _iso.Primary.VolumeSpaceSize;
        foreach (var files in new[] { _iso.RockRidgeFiles(), _iso.JolietFiles() })
        {
            foreach (var file in files.Values)
            {
                Assert.InRange(file.Extent + (file.DataLength + 2047) / 2048, 17u, volumeSectors);
            }
        }
    }

    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    [InlineData(2047)]
    [InlineData(2048)]
    [InlineData(2049)]
    [InlineData(37 * 2048)]
    [InlineData(37 * 2048 + 1)]
    [InlineData(40 * 2048)]
    public void Image_length_is_whole_sectors_and_the_volume_space_size(int length)
    {
        var image = Image(new byte[length], Guid.NewGuid());
        Assert.Equal(MetadataIso.ImageLength(length), image.Length);
        Assert.Equal(0, image.Length % IsoReader.SectorSize);
        Assert.Equal((uint)(image.Length / IsoReader.SectorSize), new IsoReader(image).Primary.VolumeSpaceSize);
        // The header takes 27 sectors; small images are padded to 64 sectors for probers that read 68 KiB.
        Assert.Equal(Math.Max(64, 27 + (length + 2047) / 2048), image.Length / IsoReader.SectorSize);
    }

    internal static byte[] Image(byte[] userData, Guid instanceId)
    {
        using var stream = new MemoryStream();
        // Memory streams complete at once, so waiting here blocks nothing.
        MetadataIso.WriteAsync(stream, new MemoryStream(userData), userData.Length, instanceId).GetAwaiter().GetResult();
        return stream.ToArray();
    }
}
