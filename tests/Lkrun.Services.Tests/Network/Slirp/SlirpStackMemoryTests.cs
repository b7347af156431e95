using System.Runtime.InteropServices;
using Lkrun.Services.Network.Slirp;
using Lkrun.Spec;
using static Lkrun.Services.Tests.Network.TestFrames;

namespace Lkrun.Services.Tests.Network.Slirp;

public sealed unsafe class SlirpStackMemoryTests
{
    /// <summary>glibc marks a chunk that has a mapping of its own with this bit of the size word before the block.</summary>
    private const nuint ChunkIsMapped = 0x2;

    /// <summary>
    /// Left to adjust itself, glibc raises its mmap threshold to the size of a mapped block when that block is freed
    /// (up to 32 MiB), and later blocks below it come from an arena. Pinned, the threshold stays where the stack put
    /// it: a block far larger than an arena keeps free at its top still gets a mapping of its own.
    /// </summary>
    [Fact]
    public void Once_a_stack_exists_freeing_a_big_block_no_longer_moves_blocks_of_that_size_into_an_arena()
    {
        Assert.SkipUnless(OperatingSystem.IsLinux(), "a glibc setting");
        using var stack = SlirpStack.Create(Leased, NatSubnet.Mtu, new Nowhere());

        NativeMemory.Free(NativeMemory.Alloc(24 * 1024 * 1024));
        var block = NativeMemory.Alloc(16 * 1024 * 1024);
        try
        {
            var sizeWord = ((nuint*)block)[-1];
            Assert.True((sizeWord & ChunkIsMapped) != 0, "a 16 MiB block came from a malloc arena");
        }
        finally
        {
            NativeMemory.Free(block);
        }
    }
}
