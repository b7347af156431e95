using FsCheck.Xunit;
using Lkrun.Services.Interop;
using Lkrun.Services.Tests.Fakes;
using Lkrun.Services.VhostUser;

namespace Lkrun.Services.Tests.VhostUser;

public class GuestMemoryTests
{
    [Fact]
    public void Range_inside_one_region_translates()
    {
        using var fake = new FakeGuestMemory((0x1000, 0x2000), (0x10_0000, 0x1000));

        Assert.True(fake.Memory.TryTranslate(0x1000, 0x2000, out var whole));
        Assert.True(fake.Memory.TryTranslate(0x2ff0, 0x10, out var tail));
        Assert.Equal(whole + 0x1ff0, tail);
        Assert.True(fake.Memory.TryTranslate(0x10_0800, 0x800, out _));
    }

    [Theory]
    [InlineData(0x0fffUL, 2UL)]
    [InlineData(0x2fffUL, 2UL)]
    [InlineData(0x3000UL, 1UL)]
    [InlineData(0x1000UL, 0x2001UL)]
    [InlineData(0x2800UL, 0x10_0000UL)]
    [InlineData(ulong.MaxValue, 2UL)]
    [InlineData(0x1800UL, ulong.MaxValue)]
    public void Range_reaching_outside_a_region_fails(ulong address, ulong length)
    {
        using var fake = new FakeGuestMemory((0x1000, 0x2000), (0x10_0000, 0x1000));

        Assert.False(fake.Memory.TryTranslate(address, length, out _));
    }

    [Fact]
    public void Ranges_spanning_two_adjacent_regions_fail_closed()
    {
        using var fake = new FakeGuestMemory((0x1000, 0x1000), (0x2000, 0x1000));

        Assert.False(fake.Memory.TryTranslate(0x1ff0, 0x20, out _));
    }

    [Fact]
    public void User_addresses_translate_to_the_same_host_memory()
    {
        using var fake = new FakeGuestMemory((0x4000, 0x1000));

        Assert.True(fake.Memory.TryTranslate(0x4100, 16, out var byGuest));
        Assert.True(fake.Memory.TryTranslateUser(FakeGuestMemory.User(0x4100), 16, out var byUser));
        Assert.Equal(byGuest, byUser);
        Assert.False(fake.Memory.TryTranslateUser(0x4100, 16, out _));
    }

    [Fact]
    public void Overlapping_or_wrapping_regions_are_refused()
    {
        Assert.Throws<GuestMemoryException>(() => new GuestMemory([new(0x1000, 0x2000, 0, 0x10000), new(0x2000, 0x1000, 0, 0x20000)]));
        Assert.Throws<GuestMemoryException>(() => new GuestMemory([new(ulong.MaxValue - 10, 0x100, 0, 0x10000)]));
        Assert.Throws<GuestMemoryException>(() => new GuestMemory([new(0x1000, 0, 0, 0x10000)]));
    }

    [Fact]
    public unsafe void Regions_map_from_a_memfd_at_their_offsets()
    {
        using var memfd = new FileDescriptor(LibC.Check(LibC.memfd_create("guest", LibC.MFD_CLOEXEC), "memfd_create"));
        LibC.Check(LibC.ftruncate(memfd.Number, 0x4000), "ftruncate");
        using (var writer = MemoryMapping.MapShared(memfd.Number, 0x4000))
        {
            *(uint*)(writer.Address + 0x3000) = 0xfeedf00d;
        }

        using var memory = GuestMemory.Map([new MemoryRegionDescription(0x10_0000, 0x2000, 0x7000_0000, 0x2000)], [memfd]);

        Assert.True(memory.TryTranslate(0x10_1000, 4, out var host));
        Assert.Equal(0xfeedf00du, *(uint*)host);
    }

    [Fact]
    public void A_region_past_the_end_of_its_file_is_refused_before_it_is_mapped()
    {
        using var memfd = new FileDescriptor(LibC.Check(LibC.memfd_create("guest", LibC.MFD_CLOEXEC), "memfd_create"));
        LibC.Check(LibC.ftruncate(memfd.Number, 0x3000), "ftruncate");

        var error = Assert.Throws<GuestMemoryException>(() => GuestMemory.Map([new MemoryRegionDescription(0x10_0000, 0x2000, 0x7000_0000, 0x2000)], [memfd]));

        Assert.Contains("runs past its file's 0x3000 bytes", error.Message);
    }

    [Property(MaxTest = 300)]
    public void A_translation_always_lies_inside_the_region_that_holds_its_start(ulong address, uint length, byte regionCount)
    {
        var regions = new List<GuestMemoryRegion>();
        var count = 1 + regionCount % 4;
        for (var i = 0; i < count; i++)
        {
            regions.Add(new GuestMemoryRegion((ulong)i * 0x10_0000 + 0x1000, 0x8000UL * (ulong)(i + 1), 0, 0x1000_0000 * (i + 1)));
        }

        // Bias a third of the addresses into the regions so that successes are exercised too.
        if (address % 3 == 0)
        {
            address = regions[(int)(address % (ulong)count)].GuestAddress + address % 0x9000;
        }

        var memory = new GuestMemory(regions);
        if (memory.TryTranslate(address, length, out var host))
        {
            var region = regions.Single(r => address >= r.GuestAddress && address < r.GuestAddress + r.Size);
            Assert.Equal(region.Host + (nint)(address - region.GuestAddress), host);
            Assert.True(address + length <= region.GuestAddress + region.Size);
        }
    }
}
