using System.Buffers.Binary;
using System.Diagnostics;
using System.Text;
using Lkrun.Services.Boot;

namespace Lkrun.Services.Tests.Boot;

/// <summary>
/// Hand-made kernels in the shapes lkrun reads: a small x86 ELF with (or without) the PVH note, and a bzImage
/// around a payload compressed the way the kernel build compresses it, by the same command-line tools.
/// </summary>
internal static class KernelFixtures
{
    public const uint PvhEntry = 0x0100_0f00;
    public const ushort ProtocolVersion = 0x020f;
    public const uint InitSize = 0x0200_0000;

    /// <summary>What the bzImage's setup code and decompressor take before the payload in these fixtures.</summary>
    public const int SetupSectors = 4;

    public const int DecompressorLength = 0x1234;

    /// <summary>
    /// An ELF kernel: the header, a PT_LOAD and a PT_NOTE program header, notes (a GNU build id, Xen's entry
    /// note of another type, then the PVH entry when asked), and a body of <paramref name="bodyLength"/> bytes
    /// that holds virtio-mmio's ACPI id when asked.
    /// </summary>
    public static byte[] Elf(bool pvh = true, bool virtioMmio = true, int bodyLength = 64 * 1024, bool is64 = true, int pvhDescriptorLength = 4)
    {
        var notes = new MemoryStream();
        WriteNote(notes, "GNU", 3, new byte[20]);
        WriteNote(notes, "Xen", 1, new byte[8]);
        if (pvh)
        {
            var descriptor = new byte[pvhDescriptorLength];
            if (pvhDescriptorLength == 8)
            {
                BinaryPrimitives.WriteUInt64LittleEndian(descriptor, PvhEntry);
            }
            else
            {
                BinaryPrimitives.WriteUInt32LittleEndian(descriptor, PvhEntry);
            }
            WriteNote(notes, "Xen", 18, descriptor);
        }
        var body = Body(bodyLength, virtioMmio);
        var (headerLength, programHeaderLength) = is64 ? (64, 56) : (52, 32);
        var notesOffset = headerLength + 2 * programHeaderLength;
        var bodyOffset = notesOffset + (int)notes.Length;
        var elf = new byte[bodyOffset + body.Length];
        var span = elf.AsSpan();
        "\x7f"u8.CopyTo(span);
        "ELF"u8.CopyTo(span[1..]);
        span[4] = is64 ? (byte)2 : (byte)1;
        span[5] = 1;
        span[6] = 1;
        BinaryPrimitives.WriteUInt16LittleEndian(span[0x10..], 2);
        BinaryPrimitives.WriteUInt16LittleEndian(span[0x12..], is64 ? (ushort)62 : (ushort)3);
        BinaryPrimitives.WriteUInt32LittleEndian(span[0x14..], 1);
        if (is64)
        {
            BinaryPrimitives.WriteUInt64LittleEndian(span[0x18..], 0xffff_ffff_8100_0000);
            BinaryPrimitives.WriteUInt64LittleEndian(span[0x20..], (ulong)headerLength);
            BinaryPrimitives.WriteUInt16LittleEndian(span[0x34..], (ushort)headerLength);
            BinaryPrimitives.WriteUInt16LittleEndian(span[0x36..], (ushort)programHeaderLength);
            BinaryPrimitives.WriteUInt16LittleEndian(span[0x38..], 2);
            WriteProgramHeader64(span[headerLength..], type: 1, offset: bodyOffset, size: body.Length);
            WriteProgramHeader64(span[(headerLength + programHeaderLength)..], type: 4, offset: notesOffset, size: (int)notes.Length);
        }
        else
        {
            BinaryPrimitives.WriteUInt32LittleEndian(span[0x18..], 0xc100_0000);
            BinaryPrimitives.WriteUInt32LittleEndian(span[0x1c..], (uint)headerLength);
            BinaryPrimitives.WriteUInt16LittleEndian(span[0x28..], (ushort)headerLength);
            BinaryPrimitives.WriteUInt16LittleEndian(span[0x2a..], (ushort)programHeaderLength);
            BinaryPrimitives.WriteUInt16LittleEndian(span[0x2c..], 2);
            WriteProgramHeader32(span[headerLength..], type: 1, offset: bodyOffset, size: body.Length);
            WriteProgramHeader32(span[(headerLength + programHeaderLength)..], type: 4, offset: notesOffset, size: (int)notes.Length);
        }
        notes.ToArray().CopyTo(span[notesOffset..]);
        body.CopyTo(span[bodyOffset..]);
        return elf;
    }

    /// <summary>Kernel-like bytes: compressible but not trivially, with an ACPI id somewhere inside.</summary>
    private static byte[] Body(int length, bool virtioMmio)
    {
        var body = new byte[length];
        var random = new Random(14);
        for (var i = 0; i < length; i++)
        {
            body[i] = (byte)(random.Next(16) == 0 ? random.Next(256) : i / 64 % 251);
        }
        var parameter = virtioMmio ? "LNRO0005\0\0\0\0\0\0\0\0"u8 : "LNRO0004\0\0\0\0\0\0\0\0"u8;
        parameter.CopyTo(body.AsSpan(length / 2));
        return body;
    }

    private static void WriteNote(MemoryStream notes, string name, uint type, byte[] descriptor)
    {
        var nameBytes = Encoding.ASCII.GetBytes(name + "\0");
        Span<byte> header = stackalloc byte[12];
        BinaryPrimitives.WriteUInt32LittleEndian(header, (uint)nameBytes.Length);
        BinaryPrimitives.WriteUInt32LittleEndian(header[4..], (uint)descriptor.Length);
        BinaryPrimitives.WriteUInt32LittleEndian(header[8..], type);
        notes.Write(header);
        notes.Write(nameBytes);
        notes.Write(new byte[(4 - nameBytes.Length % 4) % 4]);
        notes.Write(descriptor);
        notes.Write(new byte[(4 - descriptor.Length % 4) % 4]);
    }

    private static void WriteProgramHeader64(Span<byte> header, uint type, int offset, int size)
    {
        BinaryPrimitives.WriteUInt32LittleEndian(header, type);
        BinaryPrimitives.WriteUInt64LittleEndian(header[0x08..], (ulong)offset);
        BinaryPrimitives.WriteUInt64LittleEndian(header[0x10..], 0xffff_ffff_8100_0000);
        BinaryPrimitives.WriteUInt64LittleEndian(header[0x18..], 0x0100_0000);
        BinaryPrimitives.WriteUInt64LittleEndian(header[0x20..], (ulong)size);
        BinaryPrimitives.WriteUInt64LittleEndian(header[0x28..], (ulong)size);
    }

    private static void WriteProgramHeader32(Span<byte> header, uint type, int offset, int size)
    {
        BinaryPrimitives.WriteUInt32LittleEndian(header, type);
        BinaryPrimitives.WriteUInt32LittleEndian(header[0x04..], (uint)offset);
        BinaryPrimitives.WriteUInt32LittleEndian(header[0x08..], 0xc100_0000);
        BinaryPrimitives.WriteUInt32LittleEndian(header[0x0c..], 0x0100_0000);
        BinaryPrimitives.WriteUInt32LittleEndian(header[0x10..], (uint)size);
        BinaryPrimitives.WriteUInt32LittleEndian(header[0x14..], (uint)size);
    }

    /// <summary>
    /// A bzImage-shaped file: (setup_sects + 1) sectors of setup with the boot flag and the header, the
    /// "decompressor" (filler), the payload, and a few bytes after it as the real image has (its CRC).
    /// </summary>
    public static byte[] BzImage(byte[] payload, ushort version = ProtocolVersion, byte setupSectors = SetupSectors)
    {
        var setupLength = ((setupSectors == 0 ? 4 : setupSectors) + 1) * 512;
        var image = new byte[setupLength + DecompressorLength + payload.Length + 4];
        var span = image.AsSpan();
        span[0x1f1] = setupSectors;
        BinaryPrimitives.WriteUInt16LittleEndian(span[0x1fe..], 0xaa55);
        "HdrS"u8.CopyTo(span[0x202..]);
        BinaryPrimitives.WriteUInt16LittleEndian(span[0x206..], version);
        span[0x211] = 1; // LOADED_HIGH
        BinaryPrimitives.WriteUInt32LittleEndian(span[0x248..], DecompressorLength);
        BinaryPrimitives.WriteUInt32LittleEndian(span[0x24c..], (uint)payload.Length);
        BinaryPrimitives.WriteUInt32LittleEndian(span[0x260..], InitSize);
        span.Slice(setupLength, DecompressorLength).Fill(0x90);
        payload.CopyTo(span[(setupLength + DecompressorLength)..]);
        return image;
    }

    public static int PayloadStart(byte setupSectors = SetupSectors) => ((setupSectors == 0 ? 4 : setupSectors) + 1) * 512 + DecompressorLength;

    /// <summary>
    /// <paramref name="data"/> compressed as arch/x86/boot/compressed/Makefile does for each CONFIG_KERNEL_*, with
    /// the size appended (gzip's own trailer holds it already).
    /// </summary>
    public static byte[] Compress(PayloadFormat format, byte[] data)
    {
        var (tool, arguments) = format switch
        {
            PayloadFormat.Gzip => ("gzip", "-n -9 -c"),
            PayloadFormat.Bzip2 => ("bzip2", "-9 -c"),
            PayloadFormat.Lzma => ("lzma", "-9 -c"),
            PayloadFormat.Xz => ("xz", "--check=crc32 --x86 --lzma2=,dict=32MiB -c"),
            PayloadFormat.Lz4 => ("lz4", "-l -9 -c"),
            PayloadFormat.Zstd => ("zstd", "-22 --ultra -q -c"),
            _ => throw new ArgumentOutOfRangeException(nameof(format)),
        };
        var compressed = Run(tool, arguments, data);
        if (format == PayloadFormat.Gzip)
        {
            return compressed;
        }
        var withSize = new byte[compressed.Length + 4];
        compressed.CopyTo(withSize, 0);
        BinaryPrimitives.WriteUInt32LittleEndian(withSize.AsSpan(compressed.Length), (uint)data.Length);
        return withSize;
    }

    /// <summary>The compressors are the tests' independent writers; a missing one fails the test naming its package.</summary>
    private static byte[] Run(string tool, string arguments, byte[] input)
    {
        var start = new ProcessStartInfo(tool, arguments)
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        Process process;
        try
        {
            process = Process.Start(start)!;
        }
        catch (System.ComponentModel.Win32Exception)
        {
            throw new Xunit.Sdk.XunitException($"{tool} is not installed; the kernel payload tests compress with it (scripts/prerequisites.sh lists its package)");
        }
        using (process)
        {
            var output = new MemoryStream();
            var copy = process.StandardOutput.BaseStream.CopyToAsync(output);
            var error = process.StandardError.ReadToEndAsync();
            process.StandardInput.BaseStream.Write(input);
            process.StandardInput.Close();
            copy.Wait();
            process.WaitForExit();
            Assert.True(process.ExitCode == 0, $"{tool} {arguments} exited with {process.ExitCode}: {error.Result}");
            return output.ToArray();
        }
    }
}
