using System.Runtime.InteropServices;

namespace Lkrun.Engines.Vz.Runtime;

/// <summary>
/// A block literal as Apple's Block ABI lays it out (llvm clang/docs/Block-ABI-Apple.rst, <c>Block_literal_1</c>),
/// with one imported variable: the GCHandle of the .NET callback the block calls.
/// </summary>
[StructLayout(LayoutKind.Sequential)]
internal struct BlockLiteral
{
    /// <summary><c>&amp;_NSConcreteStackBlock</c> for a literal built here; <c>_Block_copy</c> makes a malloc block of it.</summary>
    public nint Isa;

    public int Flags;

    public int Reserved;

    /// <summary><c>R (*invoke)(struct Block_literal_1 *, P...)</c>.</summary>
    public nint Invoke;

    /// <summary><c>struct Block_descriptor_1 *</c>, shared by every block of one kind.</summary>
    public nint Descriptor;

    /// <summary>The imported variable: a GCHandle to the callback, owned by this copy of the block (0 when it has none).</summary>
    public nint Target;
}

/// <summary><c>Block_descriptor_1</c> with the copy/dispose helpers (flag 1&lt;&lt;25) and the signature (flag 1&lt;&lt;30).</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct BlockDescriptor
{
    public nuint Reserved;

    /// <summary><c>sizeof(struct Block_literal_1)</c> with its imported variables.</summary>
    public nuint Size;

    /// <summary><c>void (*copy_helper)(void *dst, void *src)</c>, run by <c>_Block_copy</c> after it copies the bytes.</summary>
    public nint CopyHelper;

    /// <summary><c>void (*dispose_helper)(void *src)</c>, run when the last reference to a heap block goes.</summary>
    public nint DisposeHelper;

    /// <summary><c>const char *signature</c>: the block's Objective-C type encoding.</summary>
    public nint Signature;
}

/// <summary>The flag bits lkrun sets, and the type encodings of the blocks it makes.</summary>
internal static class BlockFlags
{
    public const int HasCopyDispose = 1 << 25;
    public const int HasSignature = 1 << 30;

    /// <summary>A block that imports a handle and says what it is: copy/dispose helpers and a signature.</summary>
    public const int CallbackBlock = HasCopyDispose | HasSignature;

    /// <summary><c>void (^)(NSError *)</c>: 16 bytes of arguments, the block at 0, the error at 8.</summary>
    public const string CompletionSignature = "v16@?0@\"NSError\"8";

    /// <summary><c>void (^)(VZVirtioSocketConnection *, NSError *)</c>.</summary>
    public const string ConnectionSignature = "v24@?0@\"VZVirtioSocketConnection\"8@\"NSError\"16";
}
