using System.Runtime.InteropServices;
using System.Runtime.Versioning;

namespace Lkrun.Engines.Vz.Runtime.MacOS;

/// <summary>
/// libdispatch and the block runtime, both re-exported by libSystem (the dylibs themselves live in the shared
/// cache, where the libSystem path finds them).
/// </summary>
[SupportedOSPlatform("macos")]
internal static unsafe partial class LibSystem
{
    public const string Library = "/usr/lib/libSystem.B.dylib";

    /// <summary><c>DISPATCH_AUTORELEASE_FREQUENCY_WORK_ITEM</c>: a pool around every work item.</summary>
    public const nuint AutoreleaseEveryWorkItem = 1;

    [LibraryImport(Library)]
    public static partial nint _Block_copy(BlockLiteral* block);

    [LibraryImport(Library)]
    public static partial void _Block_release(nint block);

    /// <summary><paramref name="attributes"/> 0 is <c>DISPATCH_QUEUE_SERIAL</c>.</summary>
    [LibraryImport(Library)]
    public static partial nint dispatch_queue_attr_make_with_autorelease_frequency(nint attributes, nuint frequency);

    [LibraryImport(Library)]
    public static partial nint dispatch_queue_create(byte* label, nint attributes);

    [LibraryImport(Library)]
    public static partial void dispatch_sync_f(nint queue, nint context, delegate* unmanaged<nint, void> work);

    [LibraryImport(Library)]
    public static partial void dispatch_async_f(nint queue, nint context, delegate* unmanaged<nint, void> work);

    [LibraryImport(Library)]
    public static partial void dispatch_release(nint queue);
}
