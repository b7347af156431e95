using System.Buffers.Binary;
using System.IO.Compression;
using System.Runtime.InteropServices;
using K4os.Compression.LZ4;
using SharpCompress.Compressors.BZip2;
using SharpCompress.Compressors.LZMA;
using SharpCompress.Compressors.Xz;
using ZstdSharp;

namespace Lkrun.Services.Boot;

/// <summary>The compression formats a Linux kernel build offers for the bzImage payload (CONFIG_KERNEL_*).</summary>
public enum PayloadFormat
{
    Gzip,
    Bzip2,
    Lzma,
    Xz,
    Lzo,
    Lz4,
    Zstd,
}

/// <summary>
/// Decompresses a bzImage payload on the host, which takes milliseconds where the guest's own decompressor takes
/// a second or more under emulation. The formats, as the kernel build writes them: gzip (the BCL's zlib); xz
/// with the x86 BCJ filter, LZMA "alone" and bzip2 (SharpCompress, managed); LZ4's legacy frame, blocks of at most
/// 8 MiB each behind their 4-byte compressed size (K4os.Compression.LZ4's block decoder); zstd (ZstdSharp, a
/// managed port of the reference decoder). LZO has no maintained .NET decoder and is refused. Every payload but
/// gzip's carries the decompressed size as 4 bytes appended after the compressed stream; gzip's ISIZE is the same.
/// </summary>
public static class KernelPayload
{
    private const uint Lz4LegacyMagic = 0x184c2102;
    private const int LzmaHeaderLength = 13; // 5 bytes of properties, 8 of size

    /// <summary>The payload's format from its first bytes, or null when it is none the kernel writes.</summary>
    public static PayloadFormat? Detect(ReadOnlySpan<byte> payload) => payload switch
    {
        [0x1f, 0x8b, ..] => PayloadFormat.Gzip,
        [(byte)'B', (byte)'Z', (byte)'h', ..] => PayloadFormat.Bzip2,
        [0x5d, 0x00, 0x00, ..] => PayloadFormat.Lzma,
        [0xfd, (byte)'7', (byte)'z', (byte)'X', (byte)'Z', 0x00, ..] => PayloadFormat.Xz,
        [0x89, (byte)'L', (byte)'Z', (byte)'O', ..] => PayloadFormat.Lzo,
        [0x02, 0x21, 0x4c, 0x18, ..] => PayloadFormat.Lz4,
        [0x28, 0xb5, 0x2f, 0xfd, ..] => PayloadFormat.Zstd,
        _ => null,
    };

    public static string NameOf(PayloadFormat format) => format switch
    {
        PayloadFormat.Gzip => "gzip",
        PayloadFormat.Bzip2 => "bzip2",
        PayloadFormat.Lzma => "LZMA",
        PayloadFormat.Xz => "xz",
        PayloadFormat.Lzo => "LZO",
        PayloadFormat.Lz4 => "LZ4",
        PayloadFormat.Zstd => "zstd",
        _ => throw new ArgumentOutOfRangeException(nameof(format)),
    };

    /// <summary>The decompressed size the payload's last 4 bytes give, checked against the limit.</summary>
    public static int DecompressedLength(ReadOnlySpan<byte> payload)
    {
        if (payload.Length < 4)
        {
            throw new KernelImageException("the payload is too short to hold its size");
        }
        var length = BinaryPrimitives.ReadUInt32LittleEndian(payload[^4..]);
        if (length == 0 || length > KernelImageLimits.MaxImageBytes)
        {
            throw new KernelImageException($"the payload's size trailer says {length} bytes, outside 1 to {KernelImageLimits.MaxImageBytes}");
        }
        return (int)length;
    }

    /// <summary>
    /// The decompressed payload, exactly as long as its size trailer says. Throws <see cref="KernelImageException"/>
    /// for an unknown or unsupported format and for a payload that does not decompress to that size.
    /// </summary>
    public static byte[] Decompress(ReadOnlyMemory<byte> payload)
    {
        var format = Detect(payload.Span) ?? throw new KernelImageException(
            $"unknown payload compression (it starts {Convert.ToHexString(payload.Span[..Math.Min(4, payload.Length)])})");
        if (format == PayloadFormat.Lzo)
        {
            throw new KernelImageException("LZO-compressed payloads are not supported");
        }
        var output = new byte[DecompressedLength(payload.Span)];
        // Everything but gzip ends with the appended size, which is no part of the compressed stream.
        var compressed = format == PayloadFormat.Gzip ? payload : payload[..^4];
        int written;
        try
        {
            written = format switch
            {
                PayloadFormat.Gzip => ReadAll(new GZipStream(AsStream(compressed), CompressionMode.Decompress), output),
                PayloadFormat.Xz => ReadAll(new XZStream(AsStream(compressed)), output),
                PayloadFormat.Bzip2 => ReadAll(BZip2Stream.Create(AsStream(compressed), SharpCompress.Compressors.CompressionMode.Decompress, decompressConcatenated: false), output),
                PayloadFormat.Lzma => DecodeLzma(compressed, output),
                PayloadFormat.Lz4 => DecodeLz4Legacy(compressed.Span, output),
                PayloadFormat.Zstd => DecodeZstd(compressed.Span, output),
                _ => throw new KernelImageException($"{NameOf(format)} payloads are not supported"),
            };
        }
        catch (Exception e) when (e is not (KernelImageException or OutOfMemoryException))
        {
            // The decoders throw their own types for damaged input (and some an index error): all mean the same here.
            throw new KernelImageException($"the {NameOf(format)} payload does not decompress ({e.Message})", e);
        }
        if (written == LongerThanTrailer)
        {
            throw new KernelImageException($"the {NameOf(format)} payload decompresses to more than the {output.Length} bytes its trailer says");
        }
        if (written != output.Length)
        {
            throw new KernelImageException($"the {NameOf(format)} payload decompresses to {written} bytes where its trailer says {output.Length}");
        }
        return output;
    }

    private static MemoryStream AsStream(ReadOnlyMemory<byte> bytes) =>
        MemoryMarshal.TryGetArray(bytes, out var segment)
            ? new MemoryStream(segment.Array!, segment.Offset, segment.Count, writable: false)
            : new MemoryStream(bytes.ToArray(), writable: false);

    /// <summary>What a decoder returns for a stream that goes on past the size in the trailer.</summary>
    private const int LongerThanTrailer = -1;

    /// <summary>Fills <paramref name="output"/> from <paramref name="source"/>: the bytes read, or <see cref="LongerThanTrailer"/>.</summary>
    private static int ReadAll(Stream source, Span<byte> output)
    {
        using (source)
        {
            var total = 0;
            int read;
            while (total < output.Length && (read = source.Read(output[total..])) > 0)
            {
                total += read;
            }
            return total == output.Length && source.ReadByte() >= 0 ? LongerThanTrailer : total;
        }
    }

    private static int DecodeLzma(ReadOnlyMemory<byte> compressed, Span<byte> output)
    {
        if (compressed.Length < LzmaHeaderLength)
        {
            throw new KernelImageException("the LZMA payload is cut short");
        }
        var properties = compressed[..5].ToArray();
        var stream = AsStream(compressed[LzmaHeaderLength..]);
        return ReadAll(LzmaStream.Create(properties, stream, stream.Length, output.Length), output);
    }

    /// <summary>LZ4's legacy frame: the magic, then blocks behind their compressed size; the magic may come again.</summary>
    private static int DecodeLz4Legacy(ReadOnlySpan<byte> compressed, Span<byte> output)
    {
        var position = 4;
        var written = 0;
        while (position < compressed.Length)
        {
            if (compressed.Length - position < 4)
            {
                throw new KernelImageException("the LZ4 payload ends inside a block size");
            }
            var blockLength = BinaryPrimitives.ReadUInt32LittleEndian(compressed[position..]);
            position += 4;
            if (blockLength == Lz4LegacyMagic)
            {
                continue;
            }
            if (blockLength > (uint)(compressed.Length - position))
            {
                throw new KernelImageException($"an LZ4 block of {blockLength} bytes runs past the payload");
            }
            var decoded = LZ4Codec.Decode(compressed.Slice(position, (int)blockLength), output[written..]);
            if (decoded < 0)
            {
                throw new KernelImageException("an LZ4 block does not decompress");
            }
            written += decoded;
            position += (int)blockLength;
        }
        return written;
    }

    private static int DecodeZstd(ReadOnlySpan<byte> compressed, Span<byte> output)
    {
        using var decompressor = new Decompressor();
        return decompressor.Unwrap(compressed, output);
    }
}
