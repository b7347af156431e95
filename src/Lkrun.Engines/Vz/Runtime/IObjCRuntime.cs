namespace Lkrun.Engines.Vz.Runtime;

/// <summary>An Objective-C object pointer (<c>id</c>), a class object included; <see cref="Nil"/> is 0.</summary>
public readonly record struct ObjCId(nint Handle)
{
    public static readonly ObjCId Nil = default;

    public bool IsNil => Handle == 0;

    public override string ToString() => $"0x{Handle:x}";
}

/// <summary>A registered selector (<c>SEL</c>) and its name.</summary>
public readonly record struct Selector(nint Handle, string Name)
{
    public override string ToString() => Name;
}

/// <summary>A heap block (<c>_Block_copy</c>'d), owned by whoever made it until <see cref="IObjCRuntime.ReleaseBlock"/>.</summary>
public readonly record struct ObjCBlock(nint Handle);

/// <summary>A libdispatch queue (<c>dispatch_queue_t</c>).</summary>
public readonly record struct DispatchQueue(nint Handle);

/// <summary>The methods of lkrun's <c>VZVirtualMachineDelegate</c>; called on the VM's queue with +0 arguments.</summary>
public interface IVirtualMachineDelegate
{
    /// <summary><c>guestDidStopVirtualMachine:</c>: the guest powered itself off (or rebooted).</summary>
    void GuestDidStop();

    /// <summary><c>virtualMachine:didStopWithError:</c>: the framework stopped the VM because of an error.</summary>
    void DidStopWithError(ObjCId error);

    /// <summary><c>virtualMachine:networkDevice:attachmentWasDisconnectedWithError:</c> (macOS 12).</summary>
    void NetworkAttachmentWasDisconnected(ObjCId error);
}

/// <summary>The method of lkrun's <c>VZVirtioSocketListenerDelegate</c>; called on the VM's queue.</summary>
public interface ISocketListenerDelegate
{
    /// <summary>
    /// <c>listener:shouldAcceptNewConnection:fromSocketDevice:</c>: a guest connected to a port listened on.
    /// <paramref name="connection"/> is +0: retain it to keep it.
    /// </summary>
    bool ShouldAcceptNewConnection(ObjCId connection);
}

/// <summary>lkrun's key-value observer of <c>VZVirtualMachine.state</c>; called on the VM's queue.</summary>
public interface IStateObserver
{
    /// <summary><c>observeValueForKeyPath:ofObject:change:context:</c> for the key path observed on <paramref name="observed"/>.</summary>
    void ValueChanged(ObjCId observed);
}

/// <summary>
/// The Objective-C runtime, libdispatch and the block ABI, as small as the engine needs: one typed send per
/// <see cref="Catalogue.MessageShape"/> (named <c>Send</c> + the shape), reference counting by message, blocks and
/// run-time classes for the framework's callbacks, and a serial queue. The real implementation is macOS-only
/// (<see cref="MacOS.ObjCRuntime"/>); tests run the engine against a recording fake.
/// <para>
/// Ownership follows Cocoa's rules: <c>alloc</c>/<c>init…</c> and <c>retain</c> give a +1 reference that the
/// caller releases once; everything else is +0, autoreleased into the pool of the queue work item it was made in.
/// Blocks and delegate objects made here are +1 too. Nothing here lets an Objective-C or .NET exception cross
/// between the two worlds: callbacks catch and report, and callers validate before every message that could raise.
/// </para>
/// </summary>
public interface IObjCRuntime
{
    /// <summary>The class named <paramref name="name"/>, or nil when this macOS does not have it.</summary>
    ObjCId GetClass(string name);

    Selector GetSelector(string name);

    /// <summary>Whether <paramref name="receiver"/> (an object or a class) responds to <paramref name="selector"/>: sending it otherwise raises.</summary>
    bool RespondsTo(ObjCId receiver, Selector selector);

    ObjCId SendReturnsObject(ObjCId receiver, Selector selector);

    void SendReturnsVoid(ObjCId receiver, Selector selector);

    bool SendReturnsBool(ObjCId receiver, Selector selector);

    nint SendReturnsInteger(ObjCId receiver, Selector selector);

    nuint SendReturnsUnsigned(ObjCId receiver, Selector selector);

    int SendReturnsInt32(ObjCId receiver, Selector selector);

    /// <summary>A <c>const char *</c> result as a string (null for NULL), read before the object can go away.</summary>
    string? SendReturnsCString(ObjCId receiver, Selector selector);

    ObjCId SendObjectReturnsObject(ObjCId receiver, Selector selector, ObjCId argument);

    void SendObjectReturnsVoid(ObjCId receiver, Selector selector, ObjCId argument);

    void SendBlockReturnsVoid(ObjCId receiver, Selector selector, ObjCBlock block);

    void SendUnsignedReturnsVoid(ObjCId receiver, Selector selector, nuint value);

    void SendUInt64ReturnsVoid(ObjCId receiver, Selector selector, ulong value);

    void SendIntegerReturnsVoid(ObjCId receiver, Selector selector, nint value);

    ObjCId SendUnsignedReturnsObject(ObjCId receiver, Selector selector, nuint value);

    ObjCId SendCStringReturnsObject(ObjCId receiver, Selector selector, string value);

    ObjCId SendObjectArrayReturnsObject(ObjCId receiver, Selector selector, ReadOnlySpan<ObjCId> objects);

    ObjCId SendBytesReturnsObject(ObjCId receiver, Selector selector, ReadOnlySpan<byte> bytes);

    void SendBytesOutReturnsVoid(ObjCId receiver, Selector selector, Span<byte> buffer);

    bool SendErrorOutReturnsBool(ObjCId receiver, Selector selector, out ObjCId error);

    bool SendObjectErrorOutReturnsBool(ObjCId receiver, Selector selector, ObjCId argument, out ObjCId error);

    ObjCId SendObjectObjectReturnsObject(ObjCId receiver, Selector selector, ObjCId first, ObjCId second);

    ObjCId SendObjectQueueReturnsObject(ObjCId receiver, Selector selector, ObjCId argument, DispatchQueue queue);

    ObjCId SendObjectBoolReturnsObject(ObjCId receiver, Selector selector, ObjCId argument, bool flag);

    ObjCId SendObjectBoolErrorOutReturnsObject(ObjCId receiver, Selector selector, ObjCId argument, bool flag, out ObjCId error);

    ObjCId SendObjectBoolIntegerIntegerErrorOutReturnsObject(
        ObjCId receiver, Selector selector, ObjCId argument, bool flag, nint first, nint second, out ObjCId error);

    ObjCId SendObjectUnsignedErrorOutReturnsObject(ObjCId receiver, Selector selector, ObjCId argument, nuint value, out ObjCId error);

    ObjCId SendInt32BoolReturnsObject(ObjCId receiver, Selector selector, int value, bool flag);

    void SendUInt32BlockReturnsVoid(ObjCId receiver, Selector selector, uint value, ObjCBlock block);

    void SendObjectUInt32ReturnsVoid(ObjCId receiver, Selector selector, ObjCId argument, uint value);

    void SendUInt32ReturnsVoid(ObjCId receiver, Selector selector, uint value);

    void SendObjectObjectUnsignedPointerReturnsVoid(ObjCId receiver, Selector selector, ObjCId first, ObjCId second, nuint value, nint pointer);

    void SendObjectObjectReturnsVoid(ObjCId receiver, Selector selector, ObjCId first, ObjCId second);

    /// <summary>A heap block <c>void (^)(NSError *)</c> that calls <paramref name="completed"/> with the (+0) error or nil.</summary>
    ObjCBlock CreateCompletionBlock(Action<ObjCId> completed);

    /// <summary>A heap block <c>void (^)(VZVirtioSocketConnection *, NSError *)</c> that calls <paramref name="completed"/> with both (+0).</summary>
    ObjCBlock CreateConnectionBlock(Action<ObjCId, ObjCId> completed);

    /// <summary>Gives up this code's reference to a block; the framework keeps its own copy while it needs one.</summary>
    void ReleaseBlock(ObjCBlock block);

    /// <summary>A new (+1) instance of lkrun's <c>VZVirtualMachineDelegate</c> class calling <paramref name="target"/>.</summary>
    ObjCId CreateVirtualMachineDelegate(IVirtualMachineDelegate target);

    /// <summary>A new (+1) instance of lkrun's <c>VZVirtioSocketListenerDelegate</c> class calling <paramref name="target"/>.</summary>
    ObjCId CreateSocketListenerDelegate(ISocketListenerDelegate target);

    /// <summary>A new (+1) instance of lkrun's key-value observer class calling <paramref name="target"/>.</summary>
    ObjCId CreateStateObserver(IStateObserver target);

    /// <summary>Releases an object made by one of the <c>Create…</c> methods above and forgets its target.</summary>
    void ReleaseCallbackObject(ObjCId callbackObject);

    /// <summary>A serial queue whose every work item runs inside an autorelease pool of its own.</summary>
    DispatchQueue CreateSerialQueue(string label);

    void ReleaseQueue(DispatchQueue queue);

    /// <summary>
    /// Runs <paramref name="work"/> on <paramref name="queue"/> and waits for it; an exception it throws is rethrown
    /// here. Never call it from <paramref name="queue"/> itself (libdispatch deadlocks).
    /// </summary>
    void DispatchSync(DispatchQueue queue, Action work);

    /// <summary>Runs <paramref name="work"/> on <paramref name="queue"/> later; an exception it throws is reported, not rethrown.</summary>
    void DispatchAsync(DispatchQueue queue, Action work);
}
