using System.Buffers.Binary;
using FsCheck;
using FsCheck.Fluent;
using FsCheck.Xunit;
using Lkrun.Services.Boot;

namespace Lkrun.Services.Tests.Boot;

public sealed class ElfKernelTests
{
    [Theory]
    [InlineData(true, 4)]
    [InlineData(true, 8)]
    [InlineData(false, 4)]
    public void The_pvh_entry_note_is_found_among_the_others(bool is64, int descriptorLength)
    {
        var facts = ElfKernel.Inspect(KernelFixtures.Elf(is64: is64, pvhDescriptorLength: descriptorLength));
        Assert.Equal(KernelFixtures.PvhEntry, facts.PvhEntry);
        Assert.True(facts.HasPvhEntry);
    }

    [Fact]
    public void Without_the_note_there_is_no_pvh_entry()
    {
        var facts = ElfKernel.Inspect(KernelFixtures.Elf(pvh: false));
        Assert.Null(facts.PvhEntry);
        Assert.False(facts.HasPvhEntry);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void Virtio_mmio_follows_its_acpi_id(bool virtioMmio)
    {
        Assert.Equal(virtioMmio, ElfKernel.Inspect(KernelFixtures.Elf(virtioMmio: virtioMmio)).VirtioMmio);
    }

    [Fact]
    public void The_signature_is_the_elf_magic()
    {
        Assert.True(ElfKernel.HasSignature(KernelFixtures.Elf()));
        Assert.False(ElfKernel.HasSignature(KernelFixtures.BzImage([1, 2, 3, 4])));
    }

    public static TheoryData<string, int, byte[]> Damage => new()
    {
        { "ELF class", 4, [3] },
        { "big-endian", 5, [2] },
        { "machine 183", 0x12, [183, 0] },
        { "more than 64", 0x38, [65, 0] },
        { "less than 56", 0x36, [16, 0] },
        { "program headers lie outside", 0x20, [0xf0, 0xff, 0xff, 0, 0, 0, 0, 0] },
        // The PT_NOTE header's p_filesz (second program header, at 64 + 56).
        { "outside the", 64 + 56 + 0x20, [0xff, 0xff, 0xff, 0x7f, 0, 0, 0, 0] },
    };

    [Theory]
    [MemberData(nameof(Damage))]
    public void A_damaged_header_is_refused_saying_what(string expected, int offset, byte[] bytes)
    {
        var elf = KernelFixtures.Elf();
        bytes.CopyTo(elf, offset);
        Assert.Contains(expected, Assert.Throws<KernelImageException>(() => ElfKernel.Inspect(elf)).Message);
    }

    [Fact]
    public void A_note_running_past_its_segment_is_refused()
    {
        var elf = KernelFixtures.Elf();
        var notesOffset = 64 + 2 * 56;
        // The first note's descriptor size.
        BinaryPrimitives.WriteUInt32LittleEndian(elf.AsSpan(notesOffset + 4), 0x1000);
        Assert.Contains("runs past", Assert.Throws<KernelImageException>(() => ElfKernel.Inspect(elf)).Message);
    }

    [Fact]
    public void A_header_cut_short_is_refused()
    {
        Assert.Throws<KernelImageException>(() => ElfKernel.Inspect(KernelFixtures.Elf()[..40]));
    }

    [Property(MaxTest = 2000)]
    public Property Any_damage_to_the_headers_and_notes_gives_facts_or_a_kernel_image_exception()
    {
        var elf = KernelFixtures.Elf(bodyLength: 256);
        var damage = Gen.Choose(0, 300).SelectMany(_ => ArbMap.Default.GeneratorFor<byte>(), (offset, value) => (offset, value)).ListOf();
        return Prop.ForAll(Arb.From(damage), Arb.From(Gen.Choose(0, elf.Length)), (changes, length) =>
        {
            var damaged = (byte[])elf.Clone();
            foreach (var (offset, value) in changes)
            {
                damaged[offset] = value;
            }
            try
            {
                ElfKernel.Inspect(damaged.AsSpan(0, length));
            }
            catch (KernelImageException)
            {
            }
        });
    }
}
