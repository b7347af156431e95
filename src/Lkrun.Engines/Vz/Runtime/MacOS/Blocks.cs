using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Versioning;

namespace Lkrun.Engines.Vz.Runtime.MacOS;

/// <summary>
/// Objective-C blocks that call .NET, built per Apple's Block ABI. A literal is laid out in native memory as a stack
/// block holding a GCHandle to the callback, then <c>_Block_copy</c>'d: the copy helper gives the heap block a
/// handle of its own, the literal and its handle are freed at once, and the heap block's dispose helper frees its
/// handle when the framework and lkrun have both released it. The invoke, copy and dispose functions are
/// <c>[UnmanagedCallersOnly]</c> and let no exception escape: CoreCLR cannot unwind through native frames.
/// </summary>
[SupportedOSPlatform("macos")]
internal static unsafe class Blocks
{
    private static readonly nint StackBlockClass = NativeLibrary.GetExport(NativeLibrary.Load(LibSystem.Library), "_NSConcreteStackBlock");

    private static readonly BlockDescriptor* CompletionDescriptor = NewDescriptor(BlockFlags.CompletionSignature);
    private static readonly BlockDescriptor* ConnectionDescriptor = NewDescriptor(BlockFlags.ConnectionSignature);

    /// <summary>Where callbacks report what they caught; set once by the runtime.</summary>
    public static Action<string>? Report { get; set; }

    public static nint NewCompletion(Action<ObjCId> completed) =>
        Copy(completed, (nint)(delegate* unmanaged<BlockLiteral*, nint, void>)&InvokeCompletion, CompletionDescriptor);

    public static nint NewConnection(Action<ObjCId, ObjCId> completed) =>
        Copy(completed, (nint)(delegate* unmanaged<BlockLiteral*, nint, nint, void>)&InvokeConnection, ConnectionDescriptor);

    public static void Release(nint block) => LibSystem._Block_release(block);

    private static nint Copy(Delegate callback, nint invoke, BlockDescriptor* descriptor)
    {
        var literal = (BlockLiteral*)NativeMemory.AllocZeroed((nuint)sizeof(BlockLiteral));
        var handle = GCHandle.Alloc(callback);
        try
        {
            // Safe: literal points at a zeroed allocation of sizeof(BlockLiteral) that nothing else can see yet.
            literal->Isa = StackBlockClass;
            literal->Flags = BlockFlags.CallbackBlock;
            literal->Invoke = invoke;
            literal->Descriptor = (nint)descriptor;
            literal->Target = GCHandle.ToIntPtr(handle);
            var heap = LibSystem._Block_copy(literal);
            return heap != 0 ? heap : throw new OutOfMemoryException("_Block_copy returned NULL");
        }
        finally
        {
            handle.Free();
            NativeMemory.Free(literal);
        }
    }

    /// <summary>Descriptors live as long as the process: every block of a kind points at one.</summary>
    private static BlockDescriptor* NewDescriptor(string signature)
    {
        var descriptor = (BlockDescriptor*)NativeMemory.AllocZeroed((nuint)sizeof(BlockDescriptor));
        // Safe: a fresh zeroed allocation of sizeof(BlockDescriptor), never freed.
        descriptor->Size = (nuint)sizeof(BlockLiteral);
        descriptor->CopyHelper = (nint)(delegate* unmanaged<BlockLiteral*, BlockLiteral*, void>)&CopyHelper;
        descriptor->DisposeHelper = (nint)(delegate* unmanaged<BlockLiteral*, void>)&DisposeHelper;
        descriptor->Signature = Marshal.StringToCoTaskMemUTF8(signature);
        return descriptor;
    }

    [UnmanagedCallersOnly]
    private static void CopyHelper(BlockLiteral* destination, BlockLiteral* source)
    {
        // Safe: the block runtime passes the literal being copied and its fresh heap copy, both of our layout.
        destination->Target = 0;
        try
        {
            destination->Target = GCHandle.ToIntPtr(GCHandle.Alloc(GCHandle.FromIntPtr(source->Target).Target));
        }
        catch (Exception e)
        {
            Report?.Invoke($"internal error copying a block: {e.Message}");
        }
    }

    [UnmanagedCallersOnly]
    private static void DisposeHelper(BlockLiteral* block)
    {
        // Safe: the block runtime passes a heap block of our layout, once, when its last reference goes.
        try
        {
            if (block->Target != 0)
            {
                GCHandle.FromIntPtr(block->Target).Free();
                block->Target = 0;
            }
        }
        catch (Exception e)
        {
            Report?.Invoke($"internal error disposing of a block: {e.Message}");
        }
    }

    [UnmanagedCallersOnly]
    private static void InvokeCompletion(BlockLiteral* block, nint error)
    {
        // Safe: the framework invokes a block it holds a reference to, so the block and its handle are alive.
        try
        {
            if (Target<Action<ObjCId>>(block) is { } completed)
            {
                completed(new ObjCId(error));
            }
        }
        catch (Exception e)
        {
            Report?.Invoke($"internal error in a Virtualization.framework completion handler: {e.Message}");
        }
    }

    [UnmanagedCallersOnly]
    private static void InvokeConnection(BlockLiteral* block, nint connection, nint error)
    {
        // Safe: as for InvokeCompletion.
        try
        {
            if (Target<Action<ObjCId, ObjCId>>(block) is { } completed)
            {
                completed(new ObjCId(connection), new ObjCId(error));
            }
        }
        catch (Exception e)
        {
            Report?.Invoke($"internal error in a vsock connect handler: {e.Message}");
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static T? Target<T>(BlockLiteral* block)
        where T : class => block->Target == 0 ? null : GCHandle.FromIntPtr(block->Target).Target as T;
}
