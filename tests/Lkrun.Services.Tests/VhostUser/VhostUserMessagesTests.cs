using System.Buffers.Binary;
using FsCheck.Xunit;
using Lkrun.Services.VhostUser;

namespace Lkrun.Services.Tests.VhostUser;

public class VhostUserMessagesTests
{
    private static byte[] Header(uint request, uint flags, uint size)
    {
        var bytes = new byte[VhostUserHeader.Length];
        BinaryPrimitives.WriteUInt32LittleEndian(bytes, request);
        BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(4), flags);
        BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(8), size);
        return bytes;
    }

    [Fact]
    public void Header_with_version_one_parses()
    {
        var header = VhostUserHeader.Parse(Header(24, VhostUserHeader.Version | VhostUserHeader.NeedReplyFlag, 20));

        Assert.Equal(VhostUserRequest.GetConfig, header.Request);
        Assert.Equal(20u, header.Size);
        Assert.True(header.NeedsReply);
    }

    [Theory]
    [InlineData(0u, 0u)]
    [InlineData(2u, 0u)]
    [InlineData(1u | VhostUserHeader.ReplyFlag, 0u)]
    [InlineData(1u, VhostUserLimits.MaxBodySize + 1u)]
    public void Header_with_wrong_version_reply_flag_or_oversized_body_is_rejected(uint flags, uint size)
    {
        Assert.Throws<VhostUserProtocolException>(() => VhostUserHeader.Parse(Header(1, flags, size)));
    }

    [Fact]
    public void Truncated_header_is_rejected()
    {
        Assert.Throws<VhostUserProtocolException>(() => VhostUserHeader.Parse(new byte[VhostUserHeader.Length - 1]));
    }

    [Fact]
    public void Reply_header_echoes_the_request_with_the_reply_flag()
    {
        var request = new VhostUserHeader(VhostUserRequest.GetFeatures, VhostUserHeader.Version, 0);
        var bytes = new byte[VhostUserHeader.Length];
        request.WriteReply(bytes, 8);

        Assert.Equal(1u, BinaryPrimitives.ReadUInt32LittleEndian(bytes));
        Assert.Equal(VhostUserHeader.Version | VhostUserHeader.ReplyFlag, BinaryPrimitives.ReadUInt32LittleEndian(bytes.AsSpan(4)));
        Assert.Equal(8u, BinaryPrimitives.ReadUInt32LittleEndian(bytes.AsSpan(8)));
    }

    [Theory]
    [InlineData(7)]
    [InlineData(9)]
    [InlineData(0)]
    public void U64_body_must_be_eight_bytes(int length)
    {
        Assert.Throws<VhostUserProtocolException>(() => VhostUserBody.ReadU64(VhostUserRequest.SetFeatures, new byte[length]));
    }

    [Fact]
    public void Memory_table_reads_every_region()
    {
        var body = new byte[8 + 2 * MemoryRegionDescription.Length];
        BinaryPrimitives.WriteUInt32LittleEndian(body, 2);
        BinaryPrimitives.WriteUInt64LittleEndian(body.AsSpan(8 + 32), 0x1_0000_0000);
        BinaryPrimitives.WriteUInt64LittleEndian(body.AsSpan(8 + 32 + 8), 0x2000);
        BinaryPrimitives.WriteUInt64LittleEndian(body.AsSpan(8 + 32 + 16), 0x7f00_0000);
        BinaryPrimitives.WriteUInt64LittleEndian(body.AsSpan(8 + 32 + 24), 0x1000);

        var regions = MemoryRegionDescription.ParseTable(body);

        Assert.Equal(2, regions.Length);
        Assert.Equal(new MemoryRegionDescription(0x1_0000_0000, 0x2000, 0x7f00_0000, 0x1000), regions[1]);
    }

    [Theory]
    [InlineData(0u, 8)]
    [InlineData(9u, 8 + 9 * 32)]
    [InlineData(2u, 8 + 32)]
    [InlineData(1u, 8 + 33)]
    public void Memory_table_with_bad_count_or_size_is_rejected(uint count, int length)
    {
        var body = new byte[length];
        BinaryPrimitives.WriteUInt32LittleEndian(body, count);

        Assert.Throws<VhostUserProtocolException>(() => MemoryRegionDescription.ParseTable(body));
    }

    [Fact]
    public void Ring_descriptor_notice_reads_index_and_no_descriptor_flag()
    {
        var body = new byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(body, 0x101);

        Assert.Equal(new VringDescriptorNotice(1, HasDescriptor: false), VringDescriptorNotice.Parse(VhostUserRequest.SetVringCall, body));

        BinaryPrimitives.WriteUInt64LittleEndian(body, 0x200);
        Assert.Throws<VhostUserProtocolException>(() => VringDescriptorNotice.Parse(VhostUserRequest.SetVringCall, body));
    }

    [Fact]
    public void Config_access_checks_its_payload_size()
    {
        var body = new byte[ConfigAccess.HeaderLength + 8];
        BinaryPrimitives.WriteUInt32LittleEndian(body.AsSpan(4), 8);
        Assert.Equal(8u, ConfigAccess.Parse(VhostUserRequest.GetConfig, body).Size);

        BinaryPrimitives.WriteUInt32LittleEndian(body.AsSpan(4), 9);
        Assert.Throws<VhostUserProtocolException>(() => ConfigAccess.Parse(VhostUserRequest.GetConfig, body));

        var large = new byte[ConfigAccess.HeaderLength + VhostUserLimits.MaxConfigSize + 1];
        BinaryPrimitives.WriteUInt32LittleEndian(large.AsSpan(4), VhostUserLimits.MaxConfigSize + 1);
        Assert.Throws<VhostUserProtocolException>(() => ConfigAccess.Parse(VhostUserRequest.GetConfig, large));
    }

    [Fact]
    public void Ring_address_with_unknown_flags_is_rejected()
    {
        var body = new byte[VringAddress.Length];
        BinaryPrimitives.WriteUInt32LittleEndian(body.AsSpan(4), 2);

        Assert.Throws<VhostUserProtocolException>(() => VringAddress.Parse(body));
    }

    [Property(MaxTest = 500)]
    public void Body_parsers_fail_only_with_protocol_errors(byte[] body)
    {
        var parsers = new Action[]
        {
            () => VhostUserHeader.Parse(body),
            () => VringState.Parse(VhostUserRequest.SetVringNum, body),
            () => VringAddress.Parse(body),
            () => VringDescriptorNotice.Parse(VhostUserRequest.SetVringKick, body),
            () => MemoryRegionDescription.ParseTable(body),
            () => ConfigAccess.Parse(VhostUserRequest.GetConfig, body),
            () => VhostUserBody.ReadU64(VhostUserRequest.SetFeatures, body),
        };

        foreach (var parse in parsers)
        {
            try
            {
                parse();
            }
            catch (VhostUserProtocolException)
            {
            }
        }
    }
}
