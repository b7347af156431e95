using Lkrun.Services.Boot;
using Lkrun.Services.Tests.Boot;

namespace Lkrun.Fuzz.Targets;

/// <summary>
/// A kernel image as <c>-kernel</c> may name it: an ELF is inspected; a bzImage's setup header is read, its payload
/// decompressed and the result inspected as the ELF it must be; anything else is tried as a bare payload. What must
/// hold: only <see cref="KernelImageException"/>; a header places the payload inside the image; a payload
/// decompresses to exactly the length its trailer gives. Trailers above <see cref="MaxDecompressed"/> are only
/// checked, not decompressed, so that one input cannot take half a gigabyte.
/// </summary>
internal sealed class KernelTarget : IFuzzTarget
{
    private const int MaxDecompressed = 4 << 20;

    public IEnumerable<byte[]> Seeds()
    {
        var elf = KernelFixtures.Elf(bodyLength: 2048);
        yield return elf;
        yield return KernelFixtures.Elf(pvh: false, virtioMmio: false, bodyLength: 512, is64: false);
        yield return KernelFixtures.BzImage(KernelFixtures.Compress(PayloadFormat.Gzip, elf));
        foreach (var format in new[] { PayloadFormat.Xz, PayloadFormat.Zstd, PayloadFormat.Lz4, PayloadFormat.Lzma, PayloadFormat.Bzip2 })
        {
            yield return KernelFixtures.Compress(format, elf);
        }
    }

    public void Run(ReadOnlySpan<byte> input)
    {
        try
        {
            if (ElfKernel.HasSignature(input))
            {
                ElfKernel.Inspect(input);
            }
            else if (BzImageHeader.HasSignature(input))
            {
                var header = BzImageHeader.Parse(input);
                Check.That(header.PayloadStart >= 512 && header.PayloadLength >= 4 && (long)header.PayloadStart + header.PayloadLength <= input.Length, "the payload lies inside the image");
                Check.That(header.ProtocolVersion >= BzImageHeader.MinimumVersion, "the protocol locates its payload");
                var elf = Decompress(input[header.Payload]);
                if (elf is not null)
                {
                    ElfKernel.Inspect(elf);
                }
            }
            else if (KernelPayload.Detect(input) is not null)
            {
                Decompress(input);
            }
        }
        catch (KernelImageException)
        {
        }
    }

    private static byte[]? Decompress(ReadOnlySpan<byte> payload)
    {
        var length = KernelPayload.DecompressedLength(payload);
        if (length > MaxDecompressed)
        {
            return null;
        }
        var output = KernelPayload.Decompress(payload.ToArray());
        Check.That(output.Length == length, "the payload decompresses to its trailer's length");
        return output;
    }
}
