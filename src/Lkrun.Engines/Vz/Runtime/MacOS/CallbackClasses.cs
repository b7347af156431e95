using System.Collections.Concurrent;
using System.Runtime.InteropServices;
using System.Runtime.Versioning;

namespace Lkrun.Engines.Vz.Runtime.MacOS;

/// <summary>
/// The three Objective-C classes lkrun defines at run time for the framework's callbacks: the VM delegate, the vsock
/// listener delegate and the key-value observer of the VM's state. Each instance is mapped to its .NET target
/// until it is released; an IMP whose instance has no target any more does nothing. Every IMP is
/// <c>[UnmanagedCallersOnly]</c> and catches everything.
/// </summary>
[SupportedOSPlatform("macos")]
internal static unsafe class CallbackClasses
{
    private static readonly ConcurrentDictionary<nint, object> Targets = new();
    private static readonly Lazy<nint> VirtualMachineDelegate = new(DefineVirtualMachineDelegate);
    private static readonly Lazy<nint> SocketListenerDelegate = new(DefineSocketListenerDelegate);
    private static readonly Lazy<nint> StateObserver = new(DefineStateObserver);

    public static Action<string>? Report { get; set; }

    public static nint NewVirtualMachineDelegate(IVirtualMachineDelegate target) => New(VirtualMachineDelegate.Value, target);

    public static nint NewSocketListenerDelegate(ISocketListenerDelegate target) => New(SocketListenerDelegate.Value, target);

    public static nint NewStateObserver(IStateObserver target) => New(StateObserver.Value, target);

    public static void Release(nint instance)
    {
        Targets.TryRemove(instance, out _);
        LibObjC.ReturnsVoid(instance, LibObjC.sel_registerName("release"));
    }

    private static nint New(nint cls, object target)
    {
        var instance = LibObjC.ReturnsObject(LibObjC.ReturnsObject(cls, LibObjC.sel_registerName("alloc")), LibObjC.sel_registerName("init"));
        if (instance == 0)
        {
            throw new InvalidOperationException("could not make an instance of a callback class");
        }
        Targets[instance] = target;
        return instance;
    }

    private static nint DefineVirtualMachineDelegate() => Define("LkrunVirtualMachineDelegate", "VZVirtualMachineDelegate",
    [
        ("guestDidStopVirtualMachine:", (nint)(delegate* unmanaged<nint, nint, nint, void>)&GuestDidStop, MethodEncodings.GuestDidStopVirtualMachine),
        ("virtualMachine:didStopWithError:", (nint)(delegate* unmanaged<nint, nint, nint, nint, void>)&DidStopWithError, MethodEncodings.VirtualMachineDidStopWithError),
        ("virtualMachine:networkDevice:attachmentWasDisconnectedWithError:", (nint)(delegate* unmanaged<nint, nint, nint, nint, nint, void>)&AttachmentWasDisconnected, MethodEncodings.AttachmentWasDisconnected),
    ]);

    private static nint DefineSocketListenerDelegate() => Define("LkrunSocketListenerDelegate", "VZVirtioSocketListenerDelegate",
    [
        ("listener:shouldAcceptNewConnection:fromSocketDevice:", (nint)(delegate* unmanaged<nint, nint, nint, nint, nint, byte>)&ShouldAcceptNewConnection,
            MethodEncodings.ShouldAcceptNewConnection(RuntimeInformation.ProcessArchitecture)),
    ]);

    private static nint DefineStateObserver() => Define("LkrunStateObserver", null,
    [
        ("observeValueForKeyPath:ofObject:change:context:", (nint)(delegate* unmanaged<nint, nint, nint, nint, nint, nint, void>)&ObserveValue, MethodEncodings.ObserveValueForKeyPath),
    ]);

    /// <summary>
    /// Defines an NSObject subclass, or finds the one this process defined already. Names and type strings are
    /// kept for the life of the process, whatever the runtime does with them. A protocol the runtime does not know
    /// (<c>objc_getProtocol</c> returning NULL) is left out: the framework looks for the methods themselves.
    /// </summary>
    private static nint Define(string name, string? protocol, (string Selector, nint Implementation, string Types)[] methods)
    {
        var existing = LibObjC.objc_getClass(name);
        if (existing != 0)
        {
            return existing;
        }
        var cls = LibObjC.objc_allocateClassPair(LibObjC.objc_getClass("NSObject"), (byte*)Marshal.StringToCoTaskMemUTF8(name), 0);
        if (cls == 0)
        {
            throw new InvalidOperationException($"could not define the Objective-C class {name}");
        }
        foreach (var (selector, implementation, types) in methods)
        {
            if (LibObjC.class_addMethod(cls, LibObjC.sel_registerName(selector), implementation, (byte*)Marshal.StringToCoTaskMemUTF8(types)) == 0)
            {
                throw new InvalidOperationException($"could not add {selector} to {name}");
            }
        }
        if (protocol is not null && LibObjC.objc_getProtocol(protocol) is not 0 and var found)
        {
            LibObjC.class_addProtocol(cls, found);
        }
        LibObjC.objc_registerClassPair(cls);
        return cls;
    }

    private static T? Target<T>(nint instance)
        where T : class => Targets.TryGetValue(instance, out var target) ? target as T : null;

    [UnmanagedCallersOnly]
    private static void GuestDidStop(nint self, nint selector, nint virtualMachine)
    {
        try
        {
            Target<IVirtualMachineDelegate>(self)?.GuestDidStop();
        }
        catch (Exception e)
        {
            Report?.Invoke($"internal error in guestDidStopVirtualMachine: {e.Message}");
        }
    }

    [UnmanagedCallersOnly]
    private static void DidStopWithError(nint self, nint selector, nint virtualMachine, nint error)
    {
        try
        {
            Target<IVirtualMachineDelegate>(self)?.DidStopWithError(new ObjCId(error));
        }
        catch (Exception e)
        {
            Report?.Invoke($"internal error in virtualMachine:didStopWithError: {e.Message}");
        }
    }

    [UnmanagedCallersOnly]
    private static void AttachmentWasDisconnected(nint self, nint selector, nint virtualMachine, nint networkDevice, nint error)
    {
        try
        {
            Target<IVirtualMachineDelegate>(self)?.NetworkAttachmentWasDisconnected(new ObjCId(error));
        }
        catch (Exception e)
        {
            Report?.Invoke($"internal error in attachmentWasDisconnectedWithError: {e.Message}");
        }
    }

    [UnmanagedCallersOnly]
    private static byte ShouldAcceptNewConnection(nint self, nint selector, nint listener, nint connection, nint socketDevice)
    {
        try
        {
            return Target<ISocketListenerDelegate>(self)?.ShouldAcceptNewConnection(new ObjCId(connection)) == true ? (byte)1 : (byte)0;
        }
        catch (Exception e)
        {
            Report?.Invoke($"internal error in shouldAcceptNewConnection: {e.Message}");
            return 0;
        }
    }

    [UnmanagedCallersOnly]
    private static void ObserveValue(nint self, nint selector, nint keyPath, nint observed, nint change, nint context)
    {
        try
        {
            Target<IStateObserver>(self)?.ValueChanged(new ObjCId(observed));
        }
        catch (Exception e)
        {
            Report?.Invoke($"internal error in observeValueForKeyPath: {e.Message}");
        }
    }
}
