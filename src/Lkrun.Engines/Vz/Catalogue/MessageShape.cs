using System.Collections.Frozen;

namespace Lkrun.Engines.Vz.Catalogue;

/// <summary>
/// What one argument of an Objective-C message is, as the C calling convention sees it. <c>objc_msgSend</c> must be
/// called through a function pointer of the method's exact prototype, so every kind maps to one C type.
/// </summary>
public enum ArgumentKind
{
    /// <summary><c>id</c> (any object, a class object included, or nil).</summary>
    Object,

    /// <summary>A heap block, <c>void (^)(...)</c>: a pointer, like an object.</summary>
    Block,

    /// <summary><c>dispatch_queue_t</c>: a pointer.</summary>
    Queue,

    /// <summary><c>BOOL</c>: one byte (signed char on x86_64, bool on arm64).</summary>
    Bool,

    /// <summary><c>NSInteger</c>.</summary>
    Integer,

    /// <summary><c>NSUInteger</c>.</summary>
    Unsigned,

    /// <summary><c>uint64_t</c>.</summary>
    UInt64,

    /// <summary><c>int</c>.</summary>
    Int32,

    /// <summary><c>uint32_t</c>.</summary>
    UInt32,

    /// <summary><c>const char *</c>, NUL-terminated UTF-8.</summary>
    CString,

    /// <summary><c>const id *</c> followed by its <c>NSUInteger</c> count (two C arguments).</summary>
    ObjectArray,

    /// <summary><c>const void *</c> followed by its <c>NSUInteger</c> length (two C arguments).</summary>
    Bytes,

    /// <summary><c>void *</c> followed by its <c>NSUInteger</c> length, written by the callee (two C arguments).</summary>
    BytesOut,

    /// <summary><c>void *</c>, passed through untouched (a KVO context).</summary>
    Pointer,

    /// <summary><c>NSError **</c>, always a selector's last part (<c>error:</c>).</summary>
    ErrorOut,
}

public enum ReturnKind
{
    Void,
    Object,
    Bool,
    Integer,
    Unsigned,
    Int32,
    CString,
}

/// <summary>
/// The prototypes lkrun sends messages with: each has one <c>objc_msgSend</c> entry point of its own in the real
/// runtime and one <c>Send…</c> method in <see cref="Runtime.IObjCRuntime"/> named after it. The name reads as the
/// arguments after the receiver and selector, then the return.
/// </summary>
public enum MessageShape
{
    ReturnsObject,
    ReturnsVoid,
    ReturnsBool,
    ReturnsInteger,
    ReturnsUnsigned,
    ReturnsInt32,
    ReturnsCString,
    ObjectReturnsObject,
    ObjectReturnsVoid,
    BlockReturnsVoid,
    UnsignedReturnsVoid,
    UInt64ReturnsVoid,
    IntegerReturnsVoid,
    UnsignedReturnsObject,
    CStringReturnsObject,
    ObjectArrayReturnsObject,
    BytesReturnsObject,
    BytesOutReturnsVoid,
    ErrorOutReturnsBool,
    ObjectErrorOutReturnsBool,
    ObjectObjectReturnsObject,
    ObjectQueueReturnsObject,
    ObjectBoolReturnsObject,
    ObjectBoolErrorOutReturnsObject,
    ObjectBoolIntegerIntegerErrorOutReturnsObject,
    ObjectUnsignedErrorOutReturnsObject,
    Int32BoolReturnsObject,
    UInt32BlockReturnsVoid,
    ObjectUInt32ReturnsVoid,
    UInt32ReturnsVoid,
    ObjectObjectUnsignedPointerReturnsVoid,
    ObjectObjectReturnsVoid,
}

/// <summary>The arguments (after receiver and selector) and the return of a <see cref="MessageShape"/>.</summary>
public sealed record ShapeSignature(ReturnKind Return, IReadOnlyList<ArgumentKind> Arguments)
{
    /// <summary>
    /// How many selector parts (colons) a message of this shape has: one per argument, two for the kinds that pass
    /// a pointer and its length (<c>arrayWithObjects:count:</c>).
    /// </summary>
    public int Arity => Arguments.Sum(kind => kind is ArgumentKind.ObjectArray or ArgumentKind.Bytes or ArgumentKind.BytesOut ? 2 : 1);
}

public static class MessageShapes
{
    private static readonly FrozenDictionary<MessageShape, ShapeSignature> Signatures = new Dictionary<MessageShape, ShapeSignature>
    {
        [MessageShape.ReturnsObject] = new(ReturnKind.Object, []),
        [MessageShape.ReturnsVoid] = new(ReturnKind.Void, []),
        [MessageShape.ReturnsBool] = new(ReturnKind.Bool, []),
        [MessageShape.ReturnsInteger] = new(ReturnKind.Integer, []),
        [MessageShape.ReturnsUnsigned] = new(ReturnKind.Unsigned, []),
        [MessageShape.ReturnsInt32] = new(ReturnKind.Int32, []),
        [MessageShape.ReturnsCString] = new(ReturnKind.CString, []),
        [MessageShape.ObjectReturnsObject] = new(ReturnKind.Object, [ArgumentKind.Object]),
        [MessageShape.ObjectReturnsVoid] = new(ReturnKind.Void, [ArgumentKind.Object]),
        [MessageShape.BlockReturnsVoid] = new(ReturnKind.Void, [ArgumentKind.Block]),
        [MessageShape.UnsignedReturnsVoid] = new(ReturnKind.Void, [ArgumentKind.Unsigned]),
        [MessageShape.UInt64ReturnsVoid] = new(ReturnKind.Void, [ArgumentKind.UInt64]),
        [MessageShape.IntegerReturnsVoid] = new(ReturnKind.Void, [ArgumentKind.Integer]),
        [MessageShape.UnsignedReturnsObject] = new(ReturnKind.Object, [ArgumentKind.Unsigned]),
        [MessageShape.CStringReturnsObject] = new(ReturnKind.Object, [ArgumentKind.CString]),
        [MessageShape.ObjectArrayReturnsObject] = new(ReturnKind.Object, [ArgumentKind.ObjectArray]),
        [MessageShape.BytesReturnsObject] = new(ReturnKind.Object, [ArgumentKind.Bytes]),
        [MessageShape.BytesOutReturnsVoid] = new(ReturnKind.Void, [ArgumentKind.BytesOut]),
        [MessageShape.ErrorOutReturnsBool] = new(ReturnKind.Bool, [ArgumentKind.ErrorOut]),
        [MessageShape.ObjectErrorOutReturnsBool] = new(ReturnKind.Bool, [ArgumentKind.Object, ArgumentKind.ErrorOut]),
        [MessageShape.ObjectObjectReturnsObject] = new(ReturnKind.Object, [ArgumentKind.Object, ArgumentKind.Object]),
        [MessageShape.ObjectQueueReturnsObject] = new(ReturnKind.Object, [ArgumentKind.Object, ArgumentKind.Queue]),
        [MessageShape.ObjectBoolReturnsObject] = new(ReturnKind.Object, [ArgumentKind.Object, ArgumentKind.Bool]),
        [MessageShape.ObjectBoolErrorOutReturnsObject] = new(ReturnKind.Object, [ArgumentKind.Object, ArgumentKind.Bool, ArgumentKind.ErrorOut]),
        [MessageShape.ObjectBoolIntegerIntegerErrorOutReturnsObject] = new(ReturnKind.Object, [ArgumentKind.Object, ArgumentKind.Bool, ArgumentKind.Integer, ArgumentKind.Integer, ArgumentKind.ErrorOut]),
        [MessageShape.ObjectUnsignedErrorOutReturnsObject] = new(ReturnKind.Object, [ArgumentKind.Object, ArgumentKind.Unsigned, ArgumentKind.ErrorOut]),
        [MessageShape.Int32BoolReturnsObject] = new(ReturnKind.Object, [ArgumentKind.Int32, ArgumentKind.Bool]),
        [MessageShape.UInt32BlockReturnsVoid] = new(ReturnKind.Void, [ArgumentKind.UInt32, ArgumentKind.Block]),
        [MessageShape.ObjectUInt32ReturnsVoid] = new(ReturnKind.Void, [ArgumentKind.Object, ArgumentKind.UInt32]),
        [MessageShape.UInt32ReturnsVoid] = new(ReturnKind.Void, [ArgumentKind.UInt32]),
        [MessageShape.ObjectObjectUnsignedPointerReturnsVoid] = new(ReturnKind.Void, [ArgumentKind.Object, ArgumentKind.Object, ArgumentKind.Unsigned, ArgumentKind.Pointer]),
        [MessageShape.ObjectObjectReturnsVoid] = new(ReturnKind.Void, [ArgumentKind.Object, ArgumentKind.Object]),
    }.ToFrozenDictionary();

    public static ShapeSignature Of(MessageShape shape) => Signatures[shape];

    public static IEnumerable<MessageShape> All => Signatures.Keys;
}
