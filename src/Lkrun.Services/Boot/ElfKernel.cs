using System.Buffers.Binary;

namespace Lkrun.Services.Boot;

/// <summary>
/// What lkrun needs to know of an ELF kernel (a vmlinux, or the payload of a bzImage).
/// </summary>
/// <param name="PvhEntry">
/// The 32-bit entry point of the PVH boot protocol (Xen's <c>XEN_ELFNOTE_PHYS32_ENTRY</c> note, which
/// <c>CONFIG_PVH</c> adds); QEMU boots an ELF kernel through it and only through it. Null without the note.
/// </param>
/// <param name="VirtioMmio">
/// Whether the kernel has the virtio-mmio transport built in and finds its devices in the ACPI tables
/// (<c>CONFIG_VIRTIO_MMIO=y</c> with <c>CONFIG_ACPI</c>): what QEMU's microvm machine with ACPI needs.
/// </param>
public sealed record ElfKernelFacts(ulong? PvhEntry, bool VirtioMmio)
{
    public bool HasPvhEntry => PvhEntry is not null;
}

/// <summary>
/// Reads an ELF kernel's program headers for the PVH note. The virtio-mmio test looks for the ACPI id of
/// virtio-mmio transports, <c>LNRO0005</c>, which only the virtio-mmio driver's ACPI match table holds: it is in
/// the image when the driver is built in with ACPI, and in the driver's .ko otherwise. (QEMU's microvm describes
/// its transports in its DSDT when it has ACPI, which lkrun needs for the power button, and on the kernel command
/// line only without ACPI; CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES alone is not enough.)
/// </summary>
public static class ElfKernel
{
    private const byte ClassElf32 = 1;
    private const byte ClassElf64 = 2;
    private const byte LittleEndian = 1;
    private const ushort MachineI386 = 3;
    private const ushort MachineX86_64 = 62;
    private const uint ProgramTypeNote = 4;
    private const uint NoteTypePhys32Entry = 18;

    private static ReadOnlySpan<byte> XenNoteName => "Xen\0"u8;

    /// <summary>An ACPI id in the kernel's <c>acpi_device_id</c> table: a NUL-padded 16-byte field.</summary>
    private static ReadOnlySpan<byte> VirtioMmioAcpiId => "LNRO0005\0"u8;

    public static bool HasSignature(ReadOnlySpan<byte> image) => image is [0x7f, (byte)'E', (byte)'L', (byte)'F', ..];

    /// <summary>
    /// Reads the facts of a whole ELF image. Pure: reads nothing outside <paramref name="elf"/>, allocates nothing;
    /// throws <see cref="KernelImageException"/> for anything that is not a little-endian x86 ELF with sound
    /// program headers and notes.
    /// </summary>
    public static ElfKernelFacts Inspect(ReadOnlySpan<byte> elf)
    {
        var layout = ReadLayout(elf);
        ulong? pvhEntry = null;
        for (var i = 0; i < layout.ProgramHeaderCount && pvhEntry is null; i++)
        {
            var header = elf.Slice((int)(layout.ProgramHeaderOffset + (long)i * layout.ProgramHeaderSize), layout.ProgramHeaderSize);
            if (BinaryPrimitives.ReadUInt32LittleEndian(header) != ProgramTypeNote)
            {
                continue;
            }
            var (offset, size) = layout.Is64
                ? (BinaryPrimitives.ReadUInt64LittleEndian(header[0x08..]), BinaryPrimitives.ReadUInt64LittleEndian(header[0x20..]))
                : (BinaryPrimitives.ReadUInt32LittleEndian(header[0x04..]), (ulong)BinaryPrimitives.ReadUInt32LittleEndian(header[0x10..]));
            if (offset > (ulong)elf.Length || size > (ulong)elf.Length - offset)
            {
                throw new KernelImageException($"a note segment ({size} bytes at {offset}) lies outside the {elf.Length}-byte ELF");
            }
            pvhEntry = FindPvhEntry(elf.Slice((int)offset, (int)size));
        }
        // QEMU takes an entry of 0 for a missing note.
        return new ElfKernelFacts(pvhEntry is 0 ? null : pvhEntry, elf.IndexOf(VirtioMmioAcpiId) >= 0);
    }

    private readonly record struct Layout(bool Is64, long ProgramHeaderOffset, int ProgramHeaderSize, int ProgramHeaderCount);

    private static Layout ReadLayout(ReadOnlySpan<byte> elf)
    {
        if (!HasSignature(elf))
        {
            throw new KernelImageException("not an ELF image");
        }
        if (elf.Length < 0x40)
        {
            throw new KernelImageException("the ELF header is cut short");
        }
        var is64 = elf[4] switch
        {
            ClassElf64 => true,
            ClassElf32 => false,
            var other => throw new KernelImageException($"unknown ELF class {other}"),
        };
        if (elf[5] != LittleEndian)
        {
            throw new KernelImageException("a big-endian ELF is no x86 kernel");
        }
        var machine = BinaryPrimitives.ReadUInt16LittleEndian(elf[0x12..]);
        if (machine is not (MachineX86_64 or MachineI386))
        {
            throw new KernelImageException($"an ELF for machine {machine}, not x86");
        }
        var (offset, entrySize, count, minimumEntrySize) = is64
            ? (BinaryPrimitives.ReadUInt64LittleEndian(elf[0x20..]), BinaryPrimitives.ReadUInt16LittleEndian(elf[0x36..]), BinaryPrimitives.ReadUInt16LittleEndian(elf[0x38..]), 56)
            : (BinaryPrimitives.ReadUInt32LittleEndian(elf[0x1c..]), BinaryPrimitives.ReadUInt16LittleEndian(elf[0x2a..]), BinaryPrimitives.ReadUInt16LittleEndian(elf[0x2c..]), 32);
        if (count > KernelImageLimits.MaxProgramHeaders)
        {
            throw new KernelImageException($"{count} program headers, more than {KernelImageLimits.MaxProgramHeaders}");
        }
        if (count > 0 && entrySize < minimumEntrySize)
        {
            throw new KernelImageException($"program headers of {entrySize} bytes, less than {minimumEntrySize}");
        }
        if (offset > (ulong)elf.Length || (ulong)count * entrySize > (ulong)elf.Length - offset)
        {
            throw new KernelImageException("the program headers lie outside the ELF");
        }
        return new Layout(is64, (long)offset, entrySize, count);
    }

    /// <summary>The PVH entry among the notes of one note segment: 4-byte sizes and type, name and descriptor each padded to 4.</summary>
    private static ulong? FindPvhEntry(ReadOnlySpan<byte> notes)
    {
        while (notes.Length >= 12)
        {
            var nameSize = BinaryPrimitives.ReadUInt32LittleEndian(notes);
            var descriptorSize = BinaryPrimitives.ReadUInt32LittleEndian(notes[4..]);
            var type = BinaryPrimitives.ReadUInt32LittleEndian(notes[8..]);
            var paddedName = AlignUp(nameSize);
            var paddedDescriptor = AlignUp(descriptorSize);
            if (paddedName + paddedDescriptor > (ulong)notes.Length - 12)
            {
                throw new KernelImageException("a note runs past its segment");
            }
            var name = notes.Slice(12, (int)nameSize);
            var descriptor = notes.Slice(12 + (int)paddedName, (int)descriptorSize);
            if (type == NoteTypePhys32Entry && name.SequenceEqual(XenNoteName))
            {
                return descriptor.Length switch
                {
                    4 => BinaryPrimitives.ReadUInt32LittleEndian(descriptor),
                    8 => BinaryPrimitives.ReadUInt64LittleEndian(descriptor),
                    _ => throw new KernelImageException($"the PVH entry note holds {descriptor.Length} bytes, not 4 or 8"),
                };
            }
            notes = notes[(12 + (int)(paddedName + paddedDescriptor))..];
        }
        return null;
    }

    private static ulong AlignUp(uint size) => ((ulong)size + 3) & ~3UL;
}
