using System.Buffers.Binary;
using Lkrun.Services.Boot;

namespace Lkrun.Services.Tests.Boot;

public sealed class KernelPayloadTests
{
    public static TheoryData<PayloadFormat> Supported => [PayloadFormat.Gzip, PayloadFormat.Bzip2, PayloadFormat.Lzma, PayloadFormat.Xz, PayloadFormat.Lz4, PayloadFormat.Zstd];

    [Theory]
    [MemberData(nameof(Supported))]
    public void Each_format_the_kernel_build_writes_is_detected_and_decompressed(PayloadFormat format)
    {
        var elf = KernelFixtures.Elf();
        var payload = KernelFixtures.Compress(format, elf);
        Assert.Equal(format, KernelPayload.Detect(payload));
        Assert.Equal(elf.Length, KernelPayload.DecompressedLength(payload));
        Assert.Equal(elf, KernelPayload.Decompress(payload));
    }

    [Fact]
    public void An_lz4_payload_of_several_blocks_decompresses_whole()
    {
        // lz4's legacy frame holds at most 8 MiB in a block.
        var elf = KernelFixtures.Elf(bodyLength: 9 * 1024 * 1024);
        Assert.Equal(elf, KernelPayload.Decompress(KernelFixtures.Compress(PayloadFormat.Lz4, elf)));
    }

    [Fact]
    public void Lz4_legacy_frames_may_follow_one_another()
    {
        var elf = KernelFixtures.Elf();
        var half = elf.Length / 2;
        var first = KernelFixtures.Compress(PayloadFormat.Lz4, elf[..half]);
        var second = KernelFixtures.Compress(PayloadFormat.Lz4, elf[half..]);
        // Each without its size trailer, then the size of the whole.
        byte[] payload = [.. first[..^4], .. second[..^4], .. BitConverter.GetBytes(elf.Length)];
        Assert.Equal(elf, KernelPayload.Decompress(payload));
    }

    [Theory]
    [MemberData(nameof(Supported))]
    public void A_damaged_payload_fails_with_a_kernel_image_exception(PayloadFormat format)
    {
        var payload = KernelFixtures.Compress(format, KernelFixtures.Elf());
        var damaged = (byte[])payload.Clone();
        for (var i = damaged.Length / 3; i < damaged.Length * 2 / 3; i += 7)
        {
            damaged[i] ^= 0x5a;
        }
        var error = Assert.Throws<KernelImageException>(() => KernelPayload.Decompress(damaged));
        Assert.Contains(KernelPayload.NameOf(format), error.Message);
    }

    [Theory]
    [MemberData(nameof(Supported))]
    public void A_payload_cut_short_fails_with_a_kernel_image_exception(PayloadFormat format)
    {
        var elf = KernelFixtures.Elf();
        var payload = KernelFixtures.Compress(format, elf);
        // The size trailer stays, the compressed stream loses its second half.
        byte[] cut = [.. payload[..(payload.Length / 2)], .. BitConverter.GetBytes(elf.Length)];
        Assert.Throws<KernelImageException>(() => KernelPayload.Decompress(cut));
    }

    [Fact]
    public void A_size_trailer_smaller_than_the_content_is_damage()
    {
        var elf = KernelFixtures.Elf();
        var payload = KernelFixtures.Compress(PayloadFormat.Zstd, elf);
        BinaryPrimitives.WriteUInt32LittleEndian(payload.AsSpan(payload.Length - 4), (uint)elf.Length - 1);
        Assert.Throws<KernelImageException>(() => KernelPayload.Decompress(payload));
    }

    [Theory]
    [InlineData(0u)]
    [InlineData(0xffff_ffffu)]
    [InlineData(KernelImageLimits.MaxImageBytes + 1u)]
    public void A_size_trailer_outside_the_limits_is_refused_before_anything_is_allocated(uint size)
    {
        var payload = KernelFixtures.Compress(PayloadFormat.Xz, KernelFixtures.Elf());
        BinaryPrimitives.WriteUInt32LittleEndian(payload.AsSpan(payload.Length - 4), size);
        Assert.Contains("size trailer", Assert.Throws<KernelImageException>(() => KernelPayload.Decompress(payload)).Message);
    }

    [Fact]
    public void Lzo_is_recognised_and_refused()
    {
        byte[] payload = [0x89, (byte)'L', (byte)'Z', (byte)'O', 0, 0x0d, 0x0a, 0x1a, 0x0a, 1, 0, 0, 0];
        Assert.Equal(PayloadFormat.Lzo, KernelPayload.Detect(payload));
        Assert.Contains("LZO", Assert.Throws<KernelImageException>(() => KernelPayload.Decompress(payload)).Message);
    }

    [Fact]
    public void An_unknown_format_is_refused_with_its_first_bytes()
    {
        byte[] payload = [0xde, 0xad, 0xbe, 0xef, 0, 0, 1, 0];
        Assert.Null(KernelPayload.Detect(payload));
        Assert.Contains("DEADBEEF", Assert.Throws<KernelImageException>(() => KernelPayload.Decompress(payload)).Message);
    }
}
