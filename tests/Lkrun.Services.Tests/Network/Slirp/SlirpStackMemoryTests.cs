using System.Runtime.InteropServices;
using Lkrun.Services.Network.Links;
using Lkrun.Services.Network.Slirp;
using Lkrun.Spec;
using static Lkrun.Services.Tests.Network.TestFrames;

namespace Lkrun.Services.Tests.Network.Slirp;

public sealed unsafe class SlirpStackMemoryTests
{
    /// <summary>glibc marks a chunk that has a mapping of its own with this bit of the size word before the block.</summary>
    private const nuint ChunkIsMapped = 0x2;

    private sealed class Nowhere : IFrameSink
    {
        public void Deliver(ReadOnlySpan<byte> frame)
        {
        }
    }

    [Fact]
    public void Once_a_stack_exists_a_socket_buffer_sized_block_has_a_mapping_of_its_own_even_after_a_bigger_one_was_freed()
    {
        Assert.SkipUnless(OperatingSystem.IsLinux(), "a glibc setting");
        using var stack = SlirpStack.Create(Leased, NatSubnet.Mtu, new Nowhere());

        // Freeing a mapped block is what raises glibc's threshold when it is left to adjust itself.
        NativeMemory.Free(NativeMemory.Alloc(512 * 1024));
        var buffer = NativeMemory.Alloc(128 * 1024 + 1460);
        try
        {
            var sizeWord = ((nuint*)buffer)[-1];
            Assert.True((sizeWord & ChunkIsMapped) != 0, "a 129 KiB block came from a malloc arena");
        }
        finally
        {
            NativeMemory.Free(buffer);
        }
    }
}
