using System.Runtime.InteropServices;
using System.Runtime.Versioning;

namespace Lkrun.Engines.Vz.Runtime.MacOS;

/// <summary>
/// libobjc. <c>objc_msgSend</c> is a trampoline that must be called through the exact prototype of the method it
/// reaches (objc4 runtime/message.h), so it is imported once per <see cref="Catalogue.MessageShape"/> under that
/// shape's name, never as a variadic function. <c>BOOL</c> is one byte both ways. No selector lkrun sends returns a
/// struct or a <c>long double</c>, so neither <c>_stret</c> nor <c>_fpret</c> is needed.
/// </summary>
[SupportedOSPlatform("macos")]
internal static unsafe partial class LibObjC
{
    private const string Library = "/usr/lib/libobjc.A.dylib";
    private const string Send = "objc_msgSend";

    [LibraryImport(Library, StringMarshalling = StringMarshalling.Utf8)]
    public static partial nint objc_getClass(string name);

    [LibraryImport(Library, StringMarshalling = StringMarshalling.Utf8)]
    public static partial nint sel_registerName(string name);

    [LibraryImport(Library)]
    public static partial nint object_getClass(nint instance);

    [LibraryImport(Library)]
    public static partial byte class_respondsToSelector(nint cls, nint selector);

    [LibraryImport(Library)]
    public static partial nint objc_allocateClassPair(nint superclass, byte* name, nuint extraBytes);

    [LibraryImport(Library)]
    public static partial byte class_addMethod(nint cls, nint selector, nint implementation, byte* types);

    [LibraryImport(Library, StringMarshalling = StringMarshalling.Utf8)]
    public static partial nint objc_getProtocol(string name);

    [LibraryImport(Library)]
    public static partial byte class_addProtocol(nint cls, nint protocol);

    [LibraryImport(Library)]
    public static partial void objc_registerClassPair(nint cls);

    [LibraryImport(Library)]
    public static partial nint objc_autoreleasePoolPush();

    [LibraryImport(Library)]
    public static partial void objc_autoreleasePoolPop(nint pool);

    [LibraryImport(Library, EntryPoint = Send)]
    public static partial nint ReturnsObject(nint receiver, nint selector);

    [LibraryImport(Library, EntryPoint = Send)]
    public static partial void ReturnsVoid(nint receiver, nint selector);

    [LibraryImport(Library, EntryPoint = Send)]
    public static partial byte ReturnsBool(nint receiver, nint selector);

    [LibraryImport(Library, EntryPoint = Send)]
    public static partial nint ReturnsInteger(nint receiver, nint selector);

    [LibraryImport(Library, EntryPoint = Send)]
    public static partial nuint ReturnsUnsigned(nint receiver, nint selector);

    [LibraryImport(Library, EntryPoint = Send)]
    public static partial int ReturnsInt32(nint receiver, nint selector);

    [LibraryImport(Library, EntryPoint = Send)]
    public static partial byte* ReturnsCString(nint receiver, nint selector);

    [LibraryImport(Library, EntryPoint = Send)]
    public static partial nint ObjectReturnsObject(nint receiver, nint selector, nint argument);

    [LibraryImport(Library, EntryPoint = Send)]
    public static partial void ObjectReturnsVoid(nint receiver, nint selector, nint argument);

    [LibraryImport(Library, EntryPoint = Send)]
    public static partial void BlockReturnsVoid(nint receiver, nint selector, nint block);

    [LibraryImport(Library, EntryPoint = Send)]
    public static partial void UnsignedReturnsVoid(nint receiver, nint selector, nuint value);

    [LibraryImport(Library, EntryPoint = Send)]
    public static partial void UInt64ReturnsVoid(nint receiver, nint selector, ulong value);

    [LibraryImport(Library, EntryPoint = Send)]
    public static partial void IntegerReturnsVoid(nint receiver, nint selector, nint value);

    [LibraryImport(Library, EntryPoint = Send)]
    public static partial nint UnsignedReturnsObject(nint receiver, nint selector, nuint value);

    [LibraryImport(Library, EntryPoint = Send, StringMarshalling = StringMarshalling.Utf8)]
    public static partial nint CStringReturnsObject(nint receiver, nint selector, string value);

    [LibraryImport(Library, EntryPoint = Send)]
    public static partial nint ObjectArrayReturnsObject(nint receiver, nint selector, nint* objects, nuint count);

    [LibraryImport(Library, EntryPoint = Send)]
    public static partial nint BytesReturnsObject(nint receiver, nint selector, byte* bytes, nuint length);

    [LibraryImport(Library, EntryPoint = Send)]
    public static partial void BytesOutReturnsVoid(nint receiver, nint selector, byte* buffer, nuint length);

    [LibraryImport(Library, EntryPoint = Send)]
    public static partial byte ErrorOutReturnsBool(nint receiver, nint selector, nint* error);

    [LibraryImport(Library, EntryPoint = Send)]
    public static partial byte ObjectErrorOutReturnsBool(nint receiver, nint selector, nint argument, nint* error);

    [LibraryImport(Library, EntryPoint = Send)]
    public static partial nint ObjectObjectReturnsObject(nint receiver, nint selector, nint first, nint second);

    [LibraryImport(Library, EntryPoint = Send)]
    public static partial nint ObjectQueueReturnsObject(nint receiver, nint selector, nint argument, nint queue);

    [LibraryImport(Library, EntryPoint = Send)]
    public static partial nint ObjectBoolReturnsObject(nint receiver, nint selector, nint argument, byte flag);

    [LibraryImport(Library, EntryPoint = Send)]
    public static partial nint ObjectBoolErrorOutReturnsObject(nint receiver, nint selector, nint argument, byte flag, nint* error);

    [LibraryImport(Library, EntryPoint = Send)]
    public static partial nint ObjectBoolIntegerIntegerErrorOutReturnsObject(
        nint receiver, nint selector, nint argument, byte flag, nint first, nint second, nint* error);

    [LibraryImport(Library, EntryPoint = Send)]
    public static partial nint ObjectUnsignedErrorOutReturnsObject(nint receiver, nint selector, nint argument, nuint value, nint* error);

    [LibraryImport(Library, EntryPoint = Send)]
    public static partial nint Int32BoolReturnsObject(nint receiver, nint selector, int value, byte flag);

    [LibraryImport(Library, EntryPoint = Send)]
    public static partial void UInt32BlockReturnsVoid(nint receiver, nint selector, uint value, nint block);

    [LibraryImport(Library, EntryPoint = Send)]
    public static partial void ObjectUInt32ReturnsVoid(nint receiver, nint selector, nint argument, uint value);

    [LibraryImport(Library, EntryPoint = Send)]
    public static partial void UInt32ReturnsVoid(nint receiver, nint selector, uint value);

    [LibraryImport(Library, EntryPoint = Send)]
    public static partial void ObjectObjectUnsignedPointerReturnsVoid(nint receiver, nint selector, nint first, nint second, nuint value, nint pointer);

    [LibraryImport(Library, EntryPoint = Send)]
    public static partial void ObjectObjectReturnsVoid(nint receiver, nint selector, nint first, nint second);
}
