using System.Collections.Concurrent;

namespace Lkrun.Engines.Vz.Runtime;

/// <summary>
/// The Foundation objects the engine makes and reads (strings, file URLs, arrays, data, errors, file handles),
/// built from the runtime's typed sends, so the same code runs against the real runtime and the recording fake.
/// Objects returned here are autoreleased (+0) unless the name says they are new.
/// </summary>
public sealed class Foundation(IObjCRuntime runtime)
{
    private readonly ConcurrentDictionary<string, Selector> _selectors = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, ObjCId> _classes = new(StringComparer.Ordinal);

    public IObjCRuntime Runtime { get; } = runtime;

    public Selector Selector(string name) => _selectors.GetOrAdd(name, Runtime.GetSelector);

    /// <summary>The class named <paramref name="name"/>, or nil when this macOS lacks it.</summary>
    public ObjCId Class(string name)
    {
        if (_classes.TryGetValue(name, out var cls))
        {
            return cls;
        }
        cls = Runtime.GetClass(name);
        return cls.IsNil ? cls : _classes.GetOrAdd(name, cls);
    }

    public ObjCId String(string value) => Runtime.SendCStringReturnsObject(Class("NSString"), Selector("stringWithUTF8String:"), value);

    public ObjCId FileUrl(string path) => Runtime.SendObjectReturnsObject(Class("NSURL"), Selector("fileURLWithPath:"), String(path));

    public ObjCId Array(ReadOnlySpan<ObjCId> items) => Runtime.SendObjectArrayReturnsObject(Class("NSArray"), Selector("arrayWithObjects:count:"), items);

    public ObjCId Data(ReadOnlySpan<byte> bytes) => Runtime.SendBytesReturnsObject(Class("NSData"), Selector("dataWithBytes:length:"), bytes);

    /// <summary>A copy of an <c>NSData</c>'s bytes.</summary>
    public byte[] Bytes(ObjCId data)
    {
        var length = Runtime.SendReturnsUnsigned(data, Selector("length"));
        var bytes = new byte[checked((int)length)];
        Runtime.SendBytesOutReturnsVoid(data, Selector("getBytes:length:"), bytes);
        return bytes;
    }

    /// <summary>An <c>NSString</c>'s text; null for nil.</summary>
    public string? Text(ObjCId value) => value.IsNil ? null : Runtime.SendReturnsCString(value, Selector("UTF8String"));

    /// <summary>A new (+1) <c>NSFileHandle</c> on <paramref name="descriptor"/>; nil when Foundation refuses it.</summary>
    public ObjCId NewFileHandle(int descriptor, bool closeOnDealloc)
    {
        var handle = Runtime.SendReturnsObject(Class("NSFileHandle"), Selector("alloc"));
        return Runtime.SendInt32BoolReturnsObject(handle, Selector("initWithFileDescriptor:closeOnDealloc:"), descriptor, closeOnDealloc);
    }

    /// <summary>An <c>NSError</c> as one line: its description, then its domain and code.</summary>
    public string Describe(ObjCId error)
    {
        if (error.IsNil)
        {
            return "no reason given";
        }
        var description = Text(Runtime.SendReturnsObject(error, Selector("localizedDescription"))) ?? "no description";
        var domain = Text(Runtime.SendReturnsObject(error, Selector("domain"))) ?? "unknown domain";
        var code = Runtime.SendReturnsInteger(error, Selector("code"));
        return $"{OneLine(description)} ({domain} {code})";
    }

    public ObjCId Retain(ObjCId value) => Runtime.SendReturnsObject(value, Selector("retain"));

    public void Release(ObjCId value)
    {
        if (!value.IsNil)
        {
            Runtime.SendReturnsVoid(value, Selector("release"));
        }
    }

    private static string OneLine(string text) =>
        string.Join("; ", text.Split(['\r', '\n'], StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(line => line.TrimEnd('.')));
}
