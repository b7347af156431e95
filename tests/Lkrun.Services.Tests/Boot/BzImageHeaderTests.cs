using System.Buffers.Binary;
using FsCheck;
using FsCheck.Fluent;
using FsCheck.Xunit;
using Lkrun.Services.Boot;

namespace Lkrun.Services.Tests.Boot;

public sealed class BzImageHeaderTests
{
    private static readonly byte[] Payload = [0x1f, 0x8b, 1, 2, 3, 4, 5, 6, 7, 8];

    [Fact]
    public void The_payload_is_located_after_the_setup_sectors()
    {
        var image = KernelFixtures.BzImage(Payload);
        var header = BzImageHeader.Parse(image);
        Assert.Equal(KernelFixtures.ProtocolVersion, header.ProtocolVersion);
        Assert.Equal(KernelFixtures.PayloadStart(), header.PayloadStart);
        Assert.Equal(Payload.Length, header.PayloadLength);
        Assert.Equal(KernelFixtures.InitSize, header.InitSize);
        Assert.Equal(Payload, image[header.Payload]);
    }

    [Fact]
    public void Setup_sectors_of_zero_mean_four()
    {
        var image = KernelFixtures.BzImage(Payload, setupSectors: 0);
        Assert.Equal(KernelFixtures.PayloadStart(setupSectors: 4), BzImageHeader.Parse(image).PayloadStart);
    }

    [Fact]
    public void Protocol_2_08_has_a_payload_but_no_init_size()
    {
        var header = BzImageHeader.Parse(KernelFixtures.BzImage(Payload, version: 0x0208));
        Assert.Equal(0u, header.InitSize);
        Assert.Equal(Payload.Length, header.PayloadLength);
    }

    [Fact]
    public void A_protocol_before_2_08_does_not_locate_its_payload()
    {
        var error = Assert.Throws<KernelImageException>(() => BzImageHeader.Parse(KernelFixtures.BzImage(Payload, version: 0x0206)));
        Assert.Contains("2.06", error.Message);
    }

    [Fact]
    public void An_image_without_the_magic_is_not_a_bzimage()
    {
        var image = KernelFixtures.BzImage(Payload);
        image[0x202] = (byte)'X';
        Assert.False(BzImageHeader.HasSignature(image));
        Assert.Throws<KernelImageException>(() => BzImageHeader.Parse(image));
    }

    [Fact]
    public void A_header_cut_short_is_refused()
    {
        var image = KernelFixtures.BzImage(Payload)[..(BzImageHeader.MinimumLength - 1)];
        Assert.True(BzImageHeader.HasSignature(image));
        Assert.Contains("cut short", Assert.Throws<KernelImageException>(() => BzImageHeader.Parse(image)).Message);
    }

    [Theory]
    [InlineData(0x24c, 0xffff_ffffu)] // payload_length past the end
    [InlineData(0x248, 0xffff_fff0u)] // payload_offset past the end
    [InlineData(0x24c, 3u)] // too short for the size trailer
    public void A_payload_outside_the_image_is_refused(int field, uint value)
    {
        var image = KernelFixtures.BzImage(Payload);
        BinaryPrimitives.WriteUInt32LittleEndian(image.AsSpan(field), value);
        Assert.Throws<KernelImageException>(() => BzImageHeader.Parse(image));
    }

    /// <summary>Whatever the bytes, the parser answers or throws its own exception, and never reads outside them.</summary>
    [Property(MaxTest = 2000)]
    public Property Any_damage_to_a_header_gives_a_header_or_a_kernel_image_exception()
    {
        var image = KernelFixtures.BzImage(Payload);
        var damage = Gen.Choose(0x1f0, 0x270).SelectMany(_ => ArbMap.Default.GeneratorFor<byte>(), (offset, value) => (offset, value)).ListOf();
        var cuts = Gen.Choose(0, image.Length);
        return Prop.ForAll(Arb.From(damage), Arb.From(cuts), (changes, length) =>
        {
            var damaged = (byte[])image.Clone();
            foreach (var (offset, value) in changes)
            {
                damaged[offset] = value;
            }
            try
            {
                var header = BzImageHeader.Parse(damaged.AsSpan(0, length));
                Assert.InRange(header.PayloadStart + (long)header.PayloadLength, 0, length);
            }
            catch (KernelImageException)
            {
            }
        });
    }
}
