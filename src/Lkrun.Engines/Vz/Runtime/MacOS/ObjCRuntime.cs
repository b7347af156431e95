using System.Runtime.ExceptionServices;
using System.Runtime.InteropServices;
using System.Runtime.Versioning;
using System.Text;

namespace Lkrun.Engines.Vz.Runtime.MacOS;

/// <summary>
/// The real <see cref="IObjCRuntime"/>: libobjc, libdispatch and the block runtime of macOS. <see cref="Load"/> loads
/// Virtualization.framework first, so that its classes are registered before anything looks them up.
/// </summary>
[SupportedOSPlatform("macos")]
public sealed unsafe class ObjCRuntime : IObjCRuntime
{
    public const string VirtualizationFramework = "/System/Library/Frameworks/Virtualization.framework/Virtualization";

    private readonly Action<string> _report;

    private ObjCRuntime(Action<string> report)
    {
        _report = report;
        Blocks.Report = report;
        CallbackClasses.Report = report;
    }

    /// <summary>
    /// Loads Virtualization.framework and returns the runtime; <paramref name="report"/> receives what a callback
    /// caught. Throws <see cref="EngineException"/> (exit code 2) on a Mac without the framework.
    /// </summary>
    public static ObjCRuntime Load(Action<string> report)
    {
        if (!NativeLibrary.TryLoad(VirtualizationFramework, out _))
        {
            throw new EngineException("this Mac has no Virtualization.framework (macOS 12 or newer has it); use the qemu backend", exitCode: 2);
        }
        return new ObjCRuntime(report);
    }

    public ObjCId GetClass(string name) => new(LibObjC.objc_getClass(name));

    public Selector GetSelector(string name) => new(LibObjC.sel_registerName(name), name);

    public bool RespondsTo(ObjCId receiver, Selector selector) =>
        !receiver.IsNil && LibObjC.class_respondsToSelector(LibObjC.object_getClass(receiver.Handle), selector.Handle) != 0;

    public ObjCId SendReturnsObject(ObjCId receiver, Selector selector) => new(LibObjC.ReturnsObject(receiver.Handle, selector.Handle));

    public void SendReturnsVoid(ObjCId receiver, Selector selector) => LibObjC.ReturnsVoid(receiver.Handle, selector.Handle);

    public bool SendReturnsBool(ObjCId receiver, Selector selector) => LibObjC.ReturnsBool(receiver.Handle, selector.Handle) != 0;

    public nint SendReturnsInteger(ObjCId receiver, Selector selector) => LibObjC.ReturnsInteger(receiver.Handle, selector.Handle);

    public nuint SendReturnsUnsigned(ObjCId receiver, Selector selector) => LibObjC.ReturnsUnsigned(receiver.Handle, selector.Handle);

    public int SendReturnsInt32(ObjCId receiver, Selector selector) => LibObjC.ReturnsInt32(receiver.Handle, selector.Handle);

    public string? SendReturnsCString(ObjCId receiver, Selector selector) =>
        Marshal.PtrToStringUTF8((nint)LibObjC.ReturnsCString(receiver.Handle, selector.Handle));

    public ObjCId SendObjectReturnsObject(ObjCId receiver, Selector selector, ObjCId argument) =>
        new(LibObjC.ObjectReturnsObject(receiver.Handle, selector.Handle, argument.Handle));

    public void SendObjectReturnsVoid(ObjCId receiver, Selector selector, ObjCId argument) =>
        LibObjC.ObjectReturnsVoid(receiver.Handle, selector.Handle, argument.Handle);

    public void SendBlockReturnsVoid(ObjCId receiver, Selector selector, ObjCBlock block) =>
        LibObjC.BlockReturnsVoid(receiver.Handle, selector.Handle, block.Handle);

    public void SendUnsignedReturnsVoid(ObjCId receiver, Selector selector, nuint value) =>
        LibObjC.UnsignedReturnsVoid(receiver.Handle, selector.Handle, value);

    public void SendUInt64ReturnsVoid(ObjCId receiver, Selector selector, ulong value) =>
        LibObjC.UInt64ReturnsVoid(receiver.Handle, selector.Handle, value);

    public void SendIntegerReturnsVoid(ObjCId receiver, Selector selector, nint value) =>
        LibObjC.IntegerReturnsVoid(receiver.Handle, selector.Handle, value);

    public ObjCId SendUnsignedReturnsObject(ObjCId receiver, Selector selector, nuint value) =>
        new(LibObjC.UnsignedReturnsObject(receiver.Handle, selector.Handle, value));

    public ObjCId SendCStringReturnsObject(ObjCId receiver, Selector selector, string value) =>
        new(LibObjC.CStringReturnsObject(receiver.Handle, selector.Handle, value));

    public ObjCId SendObjectArrayReturnsObject(ObjCId receiver, Selector selector, ReadOnlySpan<ObjCId> objects)
    {
        // Safe: ObjCId is one nint, so the pinned span is the C array of ids the callee reads objects.Length of.
        fixed (ObjCId* items = objects)
        {
            return new(LibObjC.ObjectArrayReturnsObject(receiver.Handle, selector.Handle, (nint*)items, (nuint)objects.Length));
        }
    }

    public ObjCId SendBytesReturnsObject(ObjCId receiver, Selector selector, ReadOnlySpan<byte> bytes)
    {
        // Safe: the callee copies bytes.Length bytes from the pinned span before returning.
        fixed (byte* data = bytes)
        {
            return new(LibObjC.BytesReturnsObject(receiver.Handle, selector.Handle, data, (nuint)bytes.Length));
        }
    }

    public void SendBytesOutReturnsVoid(ObjCId receiver, Selector selector, Span<byte> buffer)
    {
        // Safe: the callee writes at most buffer.Length bytes into the pinned span.
        fixed (byte* data = buffer)
        {
            LibObjC.BytesOutReturnsVoid(receiver.Handle, selector.Handle, data, (nuint)buffer.Length);
        }
    }

    public bool SendErrorOutReturnsBool(ObjCId receiver, Selector selector, out ObjCId error)
    {
        nint raw = 0;
        // Safe: raw is a local the callee may set to an autoreleased NSError.
        var result = LibObjC.ErrorOutReturnsBool(receiver.Handle, selector.Handle, &raw) != 0;
        error = new ObjCId(raw);
        return result;
    }

    public bool SendObjectErrorOutReturnsBool(ObjCId receiver, Selector selector, ObjCId argument, out ObjCId error)
    {
        nint raw = 0;
        // Safe: as for SendErrorOutReturnsBool.
        var result = LibObjC.ObjectErrorOutReturnsBool(receiver.Handle, selector.Handle, argument.Handle, &raw) != 0;
        error = new ObjCId(raw);
        return result;
    }

    public ObjCId SendObjectObjectReturnsObject(ObjCId receiver, Selector selector, ObjCId first, ObjCId second) =>
        new(LibObjC.ObjectObjectReturnsObject(receiver.Handle, selector.Handle, first.Handle, second.Handle));

    public ObjCId SendObjectQueueReturnsObject(ObjCId receiver, Selector selector, ObjCId argument, DispatchQueue queue) =>
        new(LibObjC.ObjectQueueReturnsObject(receiver.Handle, selector.Handle, argument.Handle, queue.Handle));

    public ObjCId SendObjectBoolReturnsObject(ObjCId receiver, Selector selector, ObjCId argument, bool flag) =>
        new(LibObjC.ObjectBoolReturnsObject(receiver.Handle, selector.Handle, argument.Handle, flag ? (byte)1 : (byte)0));

    public ObjCId SendObjectBoolErrorOutReturnsObject(ObjCId receiver, Selector selector, ObjCId argument, bool flag, out ObjCId error)
    {
        nint raw = 0;
        // Safe: as for SendErrorOutReturnsBool.
        var result = LibObjC.ObjectBoolErrorOutReturnsObject(receiver.Handle, selector.Handle, argument.Handle, flag ? (byte)1 : (byte)0, &raw);
        error = new ObjCId(raw);
        return new ObjCId(result);
    }

    public ObjCId SendObjectBoolIntegerIntegerErrorOutReturnsObject(
        ObjCId receiver, Selector selector, ObjCId argument, bool flag, nint first, nint second, out ObjCId error)
    {
        nint raw = 0;
        // Safe: as for SendErrorOutReturnsBool.
        var result = LibObjC.ObjectBoolIntegerIntegerErrorOutReturnsObject(
            receiver.Handle, selector.Handle, argument.Handle, flag ? (byte)1 : (byte)0, first, second, &raw);
        error = new ObjCId(raw);
        return new ObjCId(result);
    }

    public ObjCId SendObjectUnsignedErrorOutReturnsObject(ObjCId receiver, Selector selector, ObjCId argument, nuint value, out ObjCId error)
    {
        nint raw = 0;
        // Safe: as for SendErrorOutReturnsBool.
        var result = LibObjC.ObjectUnsignedErrorOutReturnsObject(receiver.Handle, selector.Handle, argument.Handle, value, &raw);
        error = new ObjCId(raw);
        return new ObjCId(result);
    }

    public ObjCId SendInt32BoolReturnsObject(ObjCId receiver, Selector selector, int value, bool flag) =>
        new(LibObjC.Int32BoolReturnsObject(receiver.Handle, selector.Handle, value, flag ? (byte)1 : (byte)0));

    public void SendUInt32BlockReturnsVoid(ObjCId receiver, Selector selector, uint value, ObjCBlock block) =>
        LibObjC.UInt32BlockReturnsVoid(receiver.Handle, selector.Handle, value, block.Handle);

    public void SendObjectUInt32ReturnsVoid(ObjCId receiver, Selector selector, ObjCId argument, uint value) =>
        LibObjC.ObjectUInt32ReturnsVoid(receiver.Handle, selector.Handle, argument.Handle, value);

    public void SendUInt32ReturnsVoid(ObjCId receiver, Selector selector, uint value) =>
        LibObjC.UInt32ReturnsVoid(receiver.Handle, selector.Handle, value);

    public void SendObjectObjectUnsignedPointerReturnsVoid(ObjCId receiver, Selector selector, ObjCId first, ObjCId second, nuint value, nint pointer) =>
        LibObjC.ObjectObjectUnsignedPointerReturnsVoid(receiver.Handle, selector.Handle, first.Handle, second.Handle, value, pointer);

    public void SendObjectObjectReturnsVoid(ObjCId receiver, Selector selector, ObjCId first, ObjCId second) =>
        LibObjC.ObjectObjectReturnsVoid(receiver.Handle, selector.Handle, first.Handle, second.Handle);

    public ObjCBlock CreateCompletionBlock(Action<ObjCId> completed) => new(Blocks.NewCompletion(completed));

    public ObjCBlock CreateConnectionBlock(Action<ObjCId, ObjCId> completed) => new(Blocks.NewConnection(completed));

    public void ReleaseBlock(ObjCBlock block) => Blocks.Release(block.Handle);

    public ObjCId CreateVirtualMachineDelegate(IVirtualMachineDelegate target) => new(CallbackClasses.NewVirtualMachineDelegate(target));

    public ObjCId CreateSocketListenerDelegate(ISocketListenerDelegate target) => new(CallbackClasses.NewSocketListenerDelegate(target));

    public ObjCId CreateStateObserver(IStateObserver target) => new(CallbackClasses.NewStateObserver(target));

    public void ReleaseCallbackObject(ObjCId callbackObject) => CallbackClasses.Release(callbackObject.Handle);

    public DispatchQueue CreateSerialQueue(string label)
    {
        var attributes = LibSystem.dispatch_queue_attr_make_with_autorelease_frequency(0, LibSystem.AutoreleaseEveryWorkItem);
        var utf8 = Encoding.UTF8.GetBytes(label + "\0");
        // Safe: libdispatch copies the NUL-terminated label before returning.
        fixed (byte* name = utf8)
        {
            var queue = LibSystem.dispatch_queue_create(name, attributes);
            return queue != 0 ? new DispatchQueue(queue) : throw new InvalidOperationException("dispatch_queue_create returned NULL");
        }
    }

    public void ReleaseQueue(DispatchQueue queue) => LibSystem.dispatch_release(queue.Handle);

    public void DispatchSync(DispatchQueue queue, Action work)
    {
        var item = new SyncWork(work);
        var handle = GCHandle.Alloc(item);
        try
        {
            LibSystem.dispatch_sync_f(queue.Handle, GCHandle.ToIntPtr(handle), &RunSync);
        }
        finally
        {
            handle.Free();
        }
        item.Failure?.Throw();
    }

    public void DispatchAsync(DispatchQueue queue, Action work)
    {
        var item = new AsyncWork(work, _report);
        LibSystem.dispatch_async_f(queue.Handle, GCHandle.ToIntPtr(GCHandle.Alloc(item)), &RunAsync);
    }

    private sealed class SyncWork(Action work)
    {
        public Action Work { get; } = work;

        public ExceptionDispatchInfo? Failure { get; set; }
    }

    private sealed record AsyncWork(Action Work, Action<string> Report);

    /// <summary>
    /// A synchronous work item, with an autorelease pool of its own (<c>dispatch_sync</c> may run it on the calling
    /// thread, outside the queue's pools); what it throws goes back to the waiting caller.
    /// </summary>
    [UnmanagedCallersOnly]
    private static void RunSync(nint context)
    {
        SyncWork? item = null;
        var pool = LibObjC.objc_autoreleasePoolPush();
        try
        {
            item = (SyncWork)GCHandle.FromIntPtr(context).Target!;
            item.Work();
        }
        catch (Exception e)
        {
            if (item is not null)
            {
                item.Failure = ExceptionDispatchInfo.Capture(e);
            }
        }
        finally
        {
            LibObjC.objc_autoreleasePoolPop(pool);
        }
    }

    /// <summary>An asynchronous work item, which owns its handle; what it throws is reported.</summary>
    [UnmanagedCallersOnly]
    private static void RunAsync(nint context)
    {
        var pool = LibObjC.objc_autoreleasePoolPush();
        try
        {
            var handle = GCHandle.FromIntPtr(context);
            var item = (AsyncWork)handle.Target!;
            handle.Free();
            try
            {
                item.Work();
            }
            catch (Exception e)
            {
                item.Report($"internal error on the VM's queue: {e.Message}");
            }
        }
        catch
        {
            // Nothing to report to: the work item itself is unreadable.
        }
        finally
        {
            LibObjC.objc_autoreleasePoolPop(pool);
        }
    }
}
