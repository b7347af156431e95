using System.Runtime.InteropServices;
using Lkrun.Engines.Vz.Runtime;

namespace Lkrun.Engines.Tests.Vz;

/// <summary>The binary layouts and encodings the real runtime hands to libobjc and the block runtime, pinned on 64-bit.</summary>
public class VzAbiTests
{
    /// <summary>llvm clang/docs/Block-ABI-Apple.rst: isa, int flags, int reserved, invoke, descriptor, then the imports.</summary>
    [Fact]
    public unsafe void A_block_literal_has_the_block_abi_layout()
    {
        Assert.Equal(8, IntPtr.Size);
        Assert.Equal(0, (int)Marshal.OffsetOf<BlockLiteral>(nameof(BlockLiteral.Isa)));
        Assert.Equal(8, (int)Marshal.OffsetOf<BlockLiteral>(nameof(BlockLiteral.Flags)));
        Assert.Equal(12, (int)Marshal.OffsetOf<BlockLiteral>(nameof(BlockLiteral.Reserved)));
        Assert.Equal(16, (int)Marshal.OffsetOf<BlockLiteral>(nameof(BlockLiteral.Invoke)));
        Assert.Equal(24, (int)Marshal.OffsetOf<BlockLiteral>(nameof(BlockLiteral.Descriptor)));
        Assert.Equal(32, (int)Marshal.OffsetOf<BlockLiteral>(nameof(BlockLiteral.Target)));
        Assert.Equal(40, sizeof(BlockLiteral));
        Assert.Equal(40, Marshal.SizeOf<BlockLiteral>());
    }

    /// <summary>Block_descriptor_1: reserved, size, copy and dispose helpers (flag 1&lt;&lt;25), signature (flag 1&lt;&lt;30).</summary>
    [Fact]
    public unsafe void A_block_descriptor_has_the_block_abi_layout()
    {
        Assert.Equal(0, (int)Marshal.OffsetOf<BlockDescriptor>(nameof(BlockDescriptor.Reserved)));
        Assert.Equal(8, (int)Marshal.OffsetOf<BlockDescriptor>(nameof(BlockDescriptor.Size)));
        Assert.Equal(16, (int)Marshal.OffsetOf<BlockDescriptor>(nameof(BlockDescriptor.CopyHelper)));
        Assert.Equal(24, (int)Marshal.OffsetOf<BlockDescriptor>(nameof(BlockDescriptor.DisposeHelper)));
        Assert.Equal(32, (int)Marshal.OffsetOf<BlockDescriptor>(nameof(BlockDescriptor.Signature)));
        Assert.Equal(40, sizeof(BlockDescriptor));
    }

    [Fact]
    public void Blocks_declare_helpers_and_a_signature_but_are_not_global()
    {
        Assert.Equal(0x0200_0000, BlockFlags.HasCopyDispose);
        Assert.Equal(0x4000_0000, BlockFlags.HasSignature);
        Assert.Equal(0x4200_0000, BlockFlags.CallbackBlock);
        // Not BLOCK_IS_GLOBAL (1 << 28): _Block_copy must copy the literal, running the copy helper.
        Assert.Equal(0, BlockFlags.CallbackBlock & (1 << 28));
    }

    /// <summary>
    /// A block signature is the return, the total argument size, then each argument with its offset: the block
    /// itself (<c>@?</c>) at 0 and each object pointer 8 bytes further, as clang encodes them.
    /// </summary>
    [Fact]
    public void Block_signatures_place_each_argument_eight_bytes_apart()
    {
        Assert.Equal("v16@?0@\"NSError\"8", BlockFlags.CompletionSignature);
        Assert.Equal("v24@?0@\"VZVirtioSocketConnection\"8@\"NSError\"16", BlockFlags.ConnectionSignature);
    }

    /// <summary>objc4 runtime/objc.h: BOOL is bool (B) where OBJC_BOOL_IS_BOOL (arm64), signed char (c) on x86_64.</summary>
    [Theory]
    [InlineData(Architecture.Arm64, "B@:@@@")]
    [InlineData(Architecture.X64, "c@:@@@")]
    public void The_listener_method_returns_bool_as_the_architecture_encodes_it(Architecture architecture, string expected)
    {
        Assert.Equal(expected, MethodEncodings.ShouldAcceptNewConnection(architecture));
    }

    /// <summary>Each registered method: its return, self (@), _cmd (:), then one type per selector part.</summary>
    [Theory]
    [InlineData("guestDidStopVirtualMachine:", MethodEncodings.GuestDidStopVirtualMachine)]
    [InlineData("virtualMachine:didStopWithError:", MethodEncodings.VirtualMachineDidStopWithError)]
    [InlineData("virtualMachine:networkDevice:attachmentWasDisconnectedWithError:", MethodEncodings.AttachmentWasDisconnected)]
    [InlineData("observeValueForKeyPath:ofObject:change:context:", MethodEncodings.ObserveValueForKeyPath)]
    [InlineData("listener:shouldAcceptNewConnection:fromSocketDevice:", "B@:@@@")]
    public void Method_encodings_have_one_type_per_selector_part(string selector, string encoding)
    {
        Assert.Equal("@:", encoding[1..3]);
        var arguments = encoding[3..].Replace("^v", "p", StringComparison.Ordinal);
        Assert.Equal(selector.Count(c => c == ':'), arguments.Length);
        Assert.Equal(selector.StartsWith("observe", StringComparison.Ordinal) ? "@@@p" : new string('@', arguments.Length), arguments);
    }

    [Fact]
    public void Other_architectures_are_refused() =>
        Assert.Throws<PlatformNotSupportedException>(() => MethodEncodings.Bool(Architecture.Arm));
}
