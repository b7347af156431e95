using System.Net.Sockets;
using System.Text;
using System.Text.RegularExpressions;
using Lkrun.Engines.Vz.Catalogue;
using Lkrun.Engines.Vz.Runtime;

namespace Lkrun.Engines.Tests.Vz.Fakes;

/// <summary>How the simulated guest answers a host connection to one of its vsock ports.</summary>
internal enum GuestPort
{
    /// <summary>Nothing listens, and the framework never answers (as VZVirtioSocketDevice.h says it may).</summary>
    Silent,

    /// <summary>Nothing listens, and the framework answers with an error.</summary>
    Refused,

    /// <summary>A program listens: the framework answers with a connection.</summary>
    Listening,
}

/// <summary>One message the code under test sent.</summary>
internal sealed record FakeCall(string Receiver, string Selector, bool OnQueue);

/// <summary>
/// A recording <see cref="IObjCRuntime"/> with a simulated Virtualization.framework behind it. It checks what the
/// real runtime cannot forgive: that every message goes through the shape the catalogue gives its selector, to a
/// live receiver, on the VM's queue; that every +1 reference is released exactly once and nothing is used after
/// its autorelease pool drained; that blocks are released as often as they are made and run at most once; that an
/// observer is removed before it goes. Breaches are recorded in <see cref="Violations"/> (and thrown where the
/// code under test would crash), because code under test may catch what is thrown.
/// </summary>
internal sealed partial class FakeObjCRuntime : IObjCRuntime, IDisposable
{
    private readonly object _lock = new();
    private readonly Dictionary<nint, FakeObject> _objects = [];
    private readonly Dictionary<string, FakeObject> _classes = new(StringComparer.Ordinal);
    private readonly Dictionary<nint, string> _selectors = [];
    private readonly Dictionary<nint, FakeBlock> _blocks = [];
    private readonly Dictionary<nint, FakeQueue> _queues = [];
    private readonly Dictionary<int, List<FakeObject>> _pools = [];
    private readonly List<(FakeObject Subject, FakeObject Observer)> _observations = [];
    private readonly List<FakeBlock> _pendingConnects = [];
    private long _nextHandle = 0x1000;
    private int _currentPool;

    public MacOSVersion Host { get; set; } = new(14);

    /// <summary>What <c>validateWithError:</c> answers; null validates.</summary>
    public FakeError? ValidationError { get; set; }

    /// <summary>What the start completion reports; null starts.</summary>
    public FakeError? StartError { get; set; }

    /// <summary>Whether the guest powers off when <c>requestStopWithError:</c> presses its button.</summary>
    public bool GuestHonoursPowerButton { get; set; } = true;

    /// <summary>Disk images the framework cannot open, with the error it gives.</summary>
    public Dictionary<string, FakeError> FailingImages { get; } = new(StringComparer.Ordinal);

    public Dictionary<uint, GuestPort> GuestPorts { get; } = [];

    /// <summary>Descriptors an <c>NSFileHandle</c> was made with, and whether it closed them.</summary>
    public Dictionary<int, bool> FileHandleDescriptors { get; } = [];

    /// <summary>Guest ends of the vsock connections the framework made, by port.</summary>
    public Dictionary<uint, List<Socket>> GuestEnds { get; } = [];

    public List<string> Violations { get; } = [];

    public List<FakeCall> Calls { get; } = [];

    public int PowerButtonPresses { get; private set; }

    /// <summary>The VM the code made, once it has.</summary>
    public FakeObject? Machine { get; private set; }

    public FakeQueue? Queue { get; private set; }

    public static FakeError Error(string description, long code = 1, string domain = "VZErrorDomain") => new(domain, code, description);

    // ---- classes, selectors, responds ----

    public ObjCId GetClass(string name)
    {
        lock (_lock)
        {
            if (!VzCatalogue.Classes.TryGetValue(name, out var info))
            {
                Violation($"looked up class {name}, which is not in the catalogue");
                return ObjCId.Nil;
            }
            if (info.Minimum > Host)
            {
                return ObjCId.Nil;
            }
            if (!_classes.TryGetValue(name, out var cls))
            {
                cls = New(name, isClass: true, "class");
                _classes[name] = cls;
            }
            return new(cls.Handle);
        }
    }

    public Selector GetSelector(string name)
    {
        lock (_lock)
        {
            var handle = _selectors.FirstOrDefault(pair => pair.Value == name).Key;
            if (handle == 0)
            {
                handle = (nint)Interlocked.Increment(ref _nextHandle);
                _selectors[handle] = name;
            }
            return new(handle, name);
        }
    }

    public bool RespondsTo(ObjCId receiver, Selector selector)
    {
        lock (_lock)
        {
            Live(receiver, selector.Name);
            return VzCatalogue.Selectors.TryGetValue(selector.Name, out var info) && info.Minimum <= Host;
        }
    }

    // ---- the typed sends ----

    public ObjCId SendReturnsObject(ObjCId receiver, Selector selector) => Id(Message(MessageShape.ReturnsObject, receiver, selector));

    public void SendReturnsVoid(ObjCId receiver, Selector selector) => Message(MessageShape.ReturnsVoid, receiver, selector);

    public bool SendReturnsBool(ObjCId receiver, Selector selector) => (bool)Message(MessageShape.ReturnsBool, receiver, selector)!;

    public nint SendReturnsInteger(ObjCId receiver, Selector selector) => (nint)(long)Message(MessageShape.ReturnsInteger, receiver, selector)!;

    public nuint SendReturnsUnsigned(ObjCId receiver, Selector selector) => (nuint)(ulong)Message(MessageShape.ReturnsUnsigned, receiver, selector)!;

    public int SendReturnsInt32(ObjCId receiver, Selector selector) => (int)Message(MessageShape.ReturnsInt32, receiver, selector)!;

    public string? SendReturnsCString(ObjCId receiver, Selector selector) => (string?)Message(MessageShape.ReturnsCString, receiver, selector);

    public ObjCId SendObjectReturnsObject(ObjCId receiver, Selector selector, ObjCId argument) =>
        Id(Message(MessageShape.ObjectReturnsObject, receiver, selector, Arg(argument)));

    public void SendObjectReturnsVoid(ObjCId receiver, Selector selector, ObjCId argument) =>
        Message(MessageShape.ObjectReturnsVoid, receiver, selector, Arg(argument));

    public void SendBlockReturnsVoid(ObjCId receiver, Selector selector, ObjCBlock block) =>
        Message(MessageShape.BlockReturnsVoid, receiver, selector, Block(block));

    public void SendUnsignedReturnsVoid(ObjCId receiver, Selector selector, nuint value) =>
        Message(MessageShape.UnsignedReturnsVoid, receiver, selector, (ulong)value);

    public void SendUInt64ReturnsVoid(ObjCId receiver, Selector selector, ulong value) =>
        Message(MessageShape.UInt64ReturnsVoid, receiver, selector, value);

    public void SendIntegerReturnsVoid(ObjCId receiver, Selector selector, nint value) =>
        Message(MessageShape.IntegerReturnsVoid, receiver, selector, (long)value);

    public ObjCId SendUnsignedReturnsObject(ObjCId receiver, Selector selector, nuint value) =>
        Id(Message(MessageShape.UnsignedReturnsObject, receiver, selector, (ulong)value));

    public ObjCId SendCStringReturnsObject(ObjCId receiver, Selector selector, string value) =>
        Id(Message(MessageShape.CStringReturnsObject, receiver, selector, value));

    public ObjCId SendObjectArrayReturnsObject(ObjCId receiver, Selector selector, ReadOnlySpan<ObjCId> objects)
    {
        var items = new List<FakeObject?>();
        foreach (var item in objects)
        {
            items.Add(Arg(item));
        }
        return Id(Message(MessageShape.ObjectArrayReturnsObject, receiver, selector, items));
    }

    public ObjCId SendBytesReturnsObject(ObjCId receiver, Selector selector, ReadOnlySpan<byte> bytes) =>
        Id(Message(MessageShape.BytesReturnsObject, receiver, selector, bytes.ToArray()));

    public void SendBytesOutReturnsVoid(ObjCId receiver, Selector selector, Span<byte> buffer)
    {
        var bytes = (byte[])Message(MessageShape.BytesOutReturnsVoid, receiver, selector, buffer.Length)!;
        bytes.CopyTo(buffer);
    }

    public bool SendErrorOutReturnsBool(ObjCId receiver, Selector selector, out ObjCId error)
    {
        var result = (bool)Message(MessageShape.ErrorOutReturnsBool, receiver, selector, out var failure)!;
        error = failure;
        return result;
    }

    public bool SendObjectErrorOutReturnsBool(ObjCId receiver, Selector selector, ObjCId argument, out ObjCId error)
    {
        var result = (bool)Message(MessageShape.ObjectErrorOutReturnsBool, receiver, selector, out var failure, Arg(argument))!;
        error = failure;
        return result;
    }

    public ObjCId SendObjectObjectReturnsObject(ObjCId receiver, Selector selector, ObjCId first, ObjCId second) =>
        Id(Message(MessageShape.ObjectObjectReturnsObject, receiver, selector, Arg(first), Arg(second)));

    public ObjCId SendObjectQueueReturnsObject(ObjCId receiver, Selector selector, ObjCId argument, DispatchQueue queue) =>
        Id(Message(MessageShape.ObjectQueueReturnsObject, receiver, selector, Arg(argument), queue));

    public ObjCId SendObjectBoolReturnsObject(ObjCId receiver, Selector selector, ObjCId argument, bool flag) =>
        Id(Message(MessageShape.ObjectBoolReturnsObject, receiver, selector, Arg(argument), flag));

    public ObjCId SendObjectBoolErrorOutReturnsObject(ObjCId receiver, Selector selector, ObjCId argument, bool flag, out ObjCId error)
    {
        var result = Id(Message(MessageShape.ObjectBoolErrorOutReturnsObject, receiver, selector, out var failure, Arg(argument), flag));
        error = failure;
        return result;
    }

    public ObjCId SendObjectBoolIntegerIntegerErrorOutReturnsObject(
        ObjCId receiver, Selector selector, ObjCId argument, bool flag, nint first, nint second, out ObjCId error)
    {
        var result = Id(Message(MessageShape.ObjectBoolIntegerIntegerErrorOutReturnsObject, receiver, selector, out var failure,
            Arg(argument), flag, (long)first, (long)second));
        error = failure;
        return result;
    }

    public ObjCId SendObjectUnsignedErrorOutReturnsObject(ObjCId receiver, Selector selector, ObjCId argument, nuint value, out ObjCId error)
    {
        var result = Id(Message(MessageShape.ObjectUnsignedErrorOutReturnsObject, receiver, selector, out var failure, Arg(argument), (ulong)value));
        error = failure;
        return result;
    }

    public ObjCId SendInt32BoolReturnsObject(ObjCId receiver, Selector selector, int value, bool flag) =>
        Id(Message(MessageShape.Int32BoolReturnsObject, receiver, selector, value, flag));

    public void SendUInt32BlockReturnsVoid(ObjCId receiver, Selector selector, uint value, ObjCBlock block) =>
        Message(MessageShape.UInt32BlockReturnsVoid, receiver, selector, value, Block(block));

    public void SendObjectUInt32ReturnsVoid(ObjCId receiver, Selector selector, ObjCId argument, uint value) =>
        Message(MessageShape.ObjectUInt32ReturnsVoid, receiver, selector, Arg(argument), value);

    public void SendUInt32ReturnsVoid(ObjCId receiver, Selector selector, uint value) =>
        Message(MessageShape.UInt32ReturnsVoid, receiver, selector, value);

    public void SendObjectObjectUnsignedPointerReturnsVoid(ObjCId receiver, Selector selector, ObjCId first, ObjCId second, nuint value, nint pointer) =>
        Message(MessageShape.ObjectObjectUnsignedPointerReturnsVoid, receiver, selector, Arg(first), Arg(second), (ulong)value, (long)pointer);

    public void SendObjectObjectReturnsVoid(ObjCId receiver, Selector selector, ObjCId first, ObjCId second) =>
        Message(MessageShape.ObjectObjectReturnsVoid, receiver, selector, Arg(first), Arg(second));

    // ---- blocks and callback objects ----

    public ObjCBlock CreateCompletionBlock(Action<ObjCId> completed) => NewBlock("completion", completed);

    public ObjCBlock CreateConnectionBlock(Action<ObjCId, ObjCId> completed) => NewBlock("connection", completed);

    public void ReleaseBlock(ObjCBlock block)
    {
        lock (_lock)
        {
            if (!_blocks.TryGetValue(block.Handle, out var fake) || fake.CodeReferences == 0)
            {
                Violation($"released block {block.Handle:x} that the code does not hold");
                return;
            }
            fake.CodeReferences--;
        }
    }

    public ObjCId CreateVirtualMachineDelegate(IVirtualMachineDelegate target) => NewCallbackObject("LkrunVirtualMachineDelegate", target);

    public ObjCId CreateSocketListenerDelegate(ISocketListenerDelegate target) => NewCallbackObject("LkrunSocketListenerDelegate", target);

    public ObjCId CreateStateObserver(IStateObserver target) => NewCallbackObject("LkrunStateObserver", target);

    public void ReleaseCallbackObject(ObjCId callbackObject)
    {
        lock (_lock)
        {
            OnQueueOnly("ReleaseCallbackObject");
            var fake = Live(callbackObject, "ReleaseCallbackObject");
            if (fake is null)
            {
                return;
            }
            if (_observations.Any(observation => observation.Observer == fake))
            {
                Violation($"{fake} released while still observing (KVO would crash)");
            }
            Release(fake);
        }
    }

    // ---- dispatch ----

    public DispatchQueue CreateSerialQueue(string label)
    {
        lock (_lock)
        {
            var handle = (nint)Interlocked.Increment(ref _nextHandle);
            var queue = new FakeQueue(label, BeginItem, EndItem);
            _queues[handle] = queue;
            Queue = queue;
            return new(handle);
        }
    }

    public void ReleaseQueue(DispatchQueue queue)
    {
        var fake = QueueOf(queue);
        fake.Released = true;
    }

    public void DispatchSync(DispatchQueue queue, Action work)
    {
        var fake = QueueOf(queue);
        if (fake.Released)
        {
            Violation("dispatch_sync on a released queue");
        }
        if (fake.IsCurrent)
        {
            Violation("dispatch_sync from the queue itself (libdispatch deadlocks)");
            throw new InvalidOperationException("dispatch_sync onto the current queue");
        }
        fake.Sync(work);
    }

    public void DispatchAsync(DispatchQueue queue, Action work)
    {
        var fake = QueueOf(queue);
        if (fake.Released)
        {
            Violation("dispatch_async on a released queue");
            return;
        }
        fake.Async(() => Guarded("a dispatch_async work item", work));
    }

    public void Dispose()
    {
        foreach (var queue in _queues.Values)
        {
            queue.Dispose();
        }
        foreach (var socket in GuestEnds.Values.SelectMany(list => list))
        {
            socket.Dispose();
        }
    }

    // ---- what tests ask ----

    /// <summary>Waits until the queue has run everything queued so far, the framework's answers included.</summary>
    public void Drain() => Queue?.Drain();

    /// <summary>Every +1 reference the code took and has not released, and every block it still holds.</summary>
    public IReadOnlyList<string> Leaks()
    {
        lock (_lock)
        {
            var leaks = _objects.Values.Where(o => !o.IsClass && !o.Dead && o.Owned > 0).Select(o => $"{o} (+{o.Owned})").ToList();
            leaks.AddRange(_blocks.Values.Where(b => b.CodeReferences > 0).Select(b => $"a {b.Kind} block"));
            return leaks;
        }
    }

    /// <summary>Blocks the simulated framework still holds (answers still pending).</summary>
    public int PendingBlocks()
    {
        lock (_lock)
        {
            return _blocks.Values.Count(b => b.FrameworkReferences > 0);
        }
    }

    /// <summary>Every object of class <paramref name="cls"/> made so far, in order, dead or alive.</summary>
    public IReadOnlyList<FakeObject> Objects(string cls)
    {
        lock (_lock)
        {
            return [.. _objects.Values.Where(o => o.Class == cls && !o.IsClass).OrderBy(o => o.Handle)];
        }
    }

    public IReadOnlyList<FakeBlock> Blocks()
    {
        lock (_lock)
        {
            return [.. _blocks.Values];
        }
    }

    public IReadOnlyList<string> Selectors(Func<FakeCall, bool>? where = null)
    {
        lock (_lock)
        {
            return Calls.Where(where ?? (_ => true)).Select(call => call.Selector).ToList();
        }
    }

    /// <summary>Asserts the whole run was clean: no breach, no leak, no block held by anyone.</summary>
    public void AssertClean()
    {
        Drain();
        lock (_lock)
        {
            Assert.Empty(Violations);
            Assert.Empty(Leaks());
            Assert.Equal(0, _blocks.Values.Count(b => b.FrameworkReferences > 0));
            Assert.All(_blocks.Values, block => Assert.True(block.Invocations <= 1, $"a {block.Kind} block ran {block.Invocations} times"));
            Assert.All(FileHandleDescriptors, pair => Assert.True(pair.Value, $"descriptor {pair.Key} given to a file handle was never closed"));
        }
    }

    // ---- the simulated guest ----

    /// <summary>The guest connects to host port <paramref name="port"/>; completes with whether lkrun took it and the guest's end.</summary>
    public Task<(bool Accepted, Socket GuestEnd)> GuestConnectsToHost(uint port)
    {
        var answer = new TaskCompletionSource<(bool, Socket)>(TaskCreationOptions.RunContinuationsAsynchronously);
        Queue!.Async(() => Guarded("a guest connection", () =>
        {
            lock (_lock)
            {
                var device = SocketDevice();
                if (device?.Properties.GetValueOrDefault($"listener:{port}") is not FakeObject { Dead: false } listener ||
                    !_objects.TryGetValue(listener.WeakDelegate, out var listenerDelegate) || listenerDelegate.Dead)
                {
                    answer.SetException(new InvalidOperationException($"nothing listens on host port {port}"));
                    return;
                }
                var (connection, guestEnd) = NewConnection(port);
                var accepted = ((ISocketListenerDelegate)listenerDelegate.Target!).ShouldAcceptNewConnection(new(connection.Handle));
                if (!accepted)
                {
                    CloseConnection(connection);
                }
                answer.SetResult((accepted, guestEnd));
            }
        }));
        return answer.Task;
    }

    /// <summary>The guest powers itself off.</summary>
    public void GuestPowersOff() => Queue!.Async(() => Guarded("the guest powering off", () =>
    {
        lock (_lock)
        {
            SetState(Machine!, 0);
            VmDelegate()?.GuestDidStop();
        }
    }));

    /// <summary>The framework stops the VM because of an error.</summary>
    public void FrameworkFails(FakeError error) => Queue!.Async(() => Guarded("a framework error", () =>
    {
        lock (_lock)
        {
            SetState(Machine!, 3);
            VmDelegate()?.DidStopWithError(new(NewError(error).Handle));
        }
    }));

    // ---- the message machinery ----

    private object? Message(MessageShape shape, ObjCId receiver, Selector selector, params object?[] arguments) =>
        Message(shape, receiver, selector, out _, arguments);

    private object? Message(MessageShape shape, ObjCId receiver, Selector selector, out ObjCId error, params object?[] arguments)
    {
        lock (_lock)
        {
            error = ObjCId.Nil;
            var onQueue = Queue?.IsCurrent == true;
            var target = Live(receiver, selector.Name);
            Calls.Add(new(target?.Class ?? "nil", selector.Name, onQueue));
            if (!onQueue)
            {
                Violation($"{selector.Name} sent to {target} off the VM's queue");
            }
            if (!VzCatalogue.Selectors.TryGetValue(selector.Name, out var info))
            {
                Violation($"{selector.Name} is not in the catalogue");
                throw new InvalidOperationException(selector.Name);
            }
            if (info.Shape != shape)
            {
                Violation($"{selector.Name} sent as {shape}; the catalogue says {info.Shape}");
            }
            if (info.Minimum > Host)
            {
                Violation($"{selector.Name} sent on macOS {Host}; it needs {info.Minimum}");
            }
            if (target is null)
            {
                throw new InvalidOperationException($"{selector.Name} sent to a dead or unknown object");
            }
            FakeError? failure = null;
            var result = Behave(target, selector.Name, arguments, ref failure);
            if (failure is not null)
            {
                error = new(NewError(failure).Handle);
            }
            return result;
        }
    }

    /// <summary>What the simulated Foundation and framework do for each selector lkrun sends.</summary>
    private object? Behave(FakeObject self, string selector, object?[] a, ref FakeError? error)
    {
        switch (selector)
        {
            case "alloc":
                {
                    if (!self.IsClass)
                    {
                        Violation($"alloc sent to the instance {self}");
                    }
                    var instance = New(self.Class, isClass: false, "alloc");
                    instance.Owned = 1;
                    return instance;
                }
            case "init":
                Initialize(self, selector);
                if (self.Class == "VZGenericMachineIdentifier")
                {
                    self.Value = Guid.NewGuid().ToByteArray();
                }
                return self;
            case "retain":
                self.Owned++;
                return self;
            case "release":
                Release(self);
                return null;

            case "stringWithUTF8String:":
                return Autoreleased(New("NSString", false, selector, (string)a[0]!));
            case "UTF8String":
                return (string?)self.Value;
            case "fileURLWithPath:":
                return Autoreleased(New("NSURL", false, selector, Text(a[0])));
            case "arrayWithObjects:count:":
                {
                    var items = ((List<FakeObject?>)a[0]!).Select(item => item ?? throw new InvalidOperationException("nil in an NSArray")).ToList();
                    var array = Autoreleased(New("NSArray", false, selector, items));
                    items.ForEach(item => Hold(array, item));
                    return array;
                }
            case "count":
                return (ulong)((List<FakeObject>)self.Value!).Count;
            case "objectAtIndex:":
                return ((List<FakeObject>)self.Value!)[(int)(ulong)a[0]!];
            case "dataWithBytes:length:":
                return Autoreleased(New("NSData", false, selector, a[0]));
            case "length":
                return (ulong)((byte[])self.Value!).Length;
            case "getBytes:length:":
                return ((byte[])self.Value!).Take((int)a[0]!).ToArray();
            case "localizedDescription":
                return Autoreleased(New("NSString", false, selector, ((FakeError)self.Value!).Description));
            case "domain":
                return Autoreleased(New("NSString", false, selector, ((FakeError)self.Value!).Domain));
            case "code":
                return ((FakeError)self.Value!).Code;
            case "initWithFileDescriptor:closeOnDealloc:":
                Initialize(self, selector);
                self.Descriptor = (int)a[0]!;
                self.ClosesDescriptor = (bool)a[1]!;
                FileHandleDescriptors[(int)a[0]!] = false;
                return self;

            case "validateWithError:":
                error = ValidationError;
                return ValidationError is null;
            case "validateTag:error:":
                {
                    var tag = Text(a[0]);
                    var valid = tag.Length > 0 && Encoding.UTF8.GetByteCount(tag) < 36;
                    error = valid ? null : Error($"invalid tag '{tag}'");
                    return valid;
                }
            case "initWithString:":
                Initialize(self, selector, a);
                return MacAddress().IsMatch(Text(a[0])) ? self : Refuse(self);
            case "initWithURL:readOnly:error:" or "initWithURL:readOnly:cachingMode:synchronizationMode:error:":
                Initialize(self, selector, a);
                if (FailingImages.TryGetValue(Text(a[0]), out var imageError))
                {
                    error = imageError;
                    return Refuse(self);
                }
                return self;
            case "initCreatingVariableStoreAtURL:options:error:":
                {
                    Initialize(self, selector, a);
                    var path = Text(a[0]);
                    if (File.Exists(path) && (ulong)a[1]! == 0)
                    {
                        error = Error($"{path} exists");
                        return Refuse(self);
                    }
                    File.WriteAllBytes(path, [0x56, 0x5a]);
                    return self;
                }
            case "initWithDataRepresentation:":
                Initialize(self, selector, a);
                self.Value = (byte[])a[0]!.As<FakeObject>().Value!;
                return ((byte[])self.Value).Length == 16 ? self : Refuse(self);
            case "dataRepresentation":
                return Autoreleased(New("NSData", false, selector, self.Value));

            case "initWithConfiguration:queue:":
                return MakeMachine(self, a[0].As<FakeObject>(), (DispatchQueue)a[1]!);
            case "setDelegate:":
                self.WeakDelegate = a[0] is FakeObject target ? target.Handle : 0;
                return null;
            case "addObserver:forKeyPath:options:context:":
                if (Text(a[1]) != "state")
                {
                    Violation($"observing {Text(a[1])}");
                }
                _observations.Add((self, a[0].As<FakeObject>()));
                return null;
            case "removeObserver:forKeyPath:":
                if (_observations.RemoveAll(o => o.Subject == self && o.Observer == a[0]) != 1)
                {
                    Violation("removed an observer that was not registered");
                }
                return null;
            case "state":
                return (long)(int)self.Properties.GetValueOrDefault("state", 0)!;
            case "canStart":
                return State(self) is 0 or 3;
            case "canStop":
                return State(self) is 1 or 2;
            case "canRequestStop":
                return State(self) == 1;
            case "canPause":
                return State(self) == 1;
            case "canResume":
                return State(self) == 2;
            case "startWithCompletionHandler:":
                Lifecycle(self, a[0].As<FakeBlock>(), transient: 4, StartError is null ? 1 : 0, StartError);
                return null;
            case "stopWithCompletionHandler:":
                Lifecycle(self, a[0].As<FakeBlock>(), transient: 7, final: 0, error: null);
                return null;
            case "pauseWithCompletionHandler:":
                Lifecycle(self, a[0].As<FakeBlock>(), transient: 5, final: 2, error: null);
                return null;
            case "resumeWithCompletionHandler:":
                Lifecycle(self, a[0].As<FakeBlock>(), transient: 6, final: 1, error: null);
                return null;
            case "requestStopWithError:":
                if (State(self) != 1)
                {
                    error = Error("the VM is not running");
                    return false;
                }
                PowerButtonPresses++;
                if (GuestHonoursPowerButton)
                {
                    Later(() =>
                    {
                        SetState(self, 0);
                        VmDelegate()?.GuestDidStop();
                    });
                }
                return true;
            case "socketDevices":
                {
                    var devices = self.References.Where(o => o.Class == "VZVirtioSocketDevice").ToList();
                    var array = Autoreleased(New("NSArray", false, selector, devices));
                    devices.ForEach(device => Hold(array, device));
                    return array;
                }

            case "connectToPort:completionHandler:":
                Connect(self, (uint)a[0]!, a[1].As<FakeBlock>());
                return null;
            case "setSocketListener:forPort:":
                {
                    var listener = a[0].As<FakeObject>();
                    Hold(self, listener);
                    self.Properties[$"listener:{(uint)a[1]!}"] = listener;
                    return null;
                }
            case "removeSocketListenerForPort:":
                if (self.Properties.Remove($"listener:{(uint)a[0]!}", out var removed) && removed is FakeObject old)
                {
                    Unhold(self, old);
                }
                return null;
            case "fileDescriptor":
                return self.Descriptor ?? -1;
            case "close":
                CloseConnection(self);
                return null;

            default:
                if (selector.StartsWith("set", StringComparison.Ordinal))
                {
                    self.Properties[selector] = a[0];
                    if (a[0] is FakeObject value)
                    {
                        Hold(self, value);
                    }
                    return null;
                }
                if (selector.StartsWith("init", StringComparison.Ordinal))
                {
                    Initialize(self, selector, a);
                    return self;
                }
                Violation($"the fake has no behaviour for {selector}");
                return null;
        }
    }

    private FakeObject MakeMachine(FakeObject vm, FakeObject configuration, DispatchQueue queue)
    {
        Initialize(vm, "initWithConfiguration:queue:");
        if (!_queues.TryGetValue(queue.Handle, out var fake) || !fake.IsCurrent)
        {
            Violation("the VM was made off the queue it was given");
        }
        // The VM copies its configuration: everything the configuration holds stays alive with the VM.
        Hold(vm, configuration);
        if (configuration.Properties.GetValueOrDefault("setSocketDevices:") is FakeObject { Value: List<FakeObject> { Count: > 0 } })
        {
            Hold(vm, New("VZVirtioSocketDevice", false, "the VM"));
        }
        vm.Properties["state"] = 0;
        Machine = vm;
        return vm;
    }

    /// <summary>A start, stop, pause or resume: the transient state now, the answer and the final state later.</summary>
    private void Lifecycle(FakeObject vm, FakeBlock block, int transient, int final, FakeError? error)
    {
        block.FrameworkReferences++;
        SetState(vm, transient);
        Later(() =>
        {
            SetState(vm, final);
            Invoke(block, error is null ? ObjCId.Nil : new ObjCId(NewError(error).Handle));
            block.FrameworkReferences--;
        });
    }

    private void Connect(FakeObject device, uint port, FakeBlock block)
    {
        block.FrameworkReferences++;
        switch (GuestPorts.GetValueOrDefault(port, GuestPort.Silent))
        {
            case GuestPort.Silent:
                _pendingConnects.Add(block);
                return;
            case GuestPort.Refused:
                Later(() =>
                {
                    Invoke(block, ObjCId.Nil, new ObjCId(NewError(Error("Connection reset by peer", 54, "NSPOSIXErrorDomain")).Handle));
                    block.FrameworkReferences--;
                });
                return;
            case GuestPort.Listening:
                Later(() =>
                {
                    var (connection, _) = NewConnection(port);
                    Invoke(block, new ObjCId(connection.Handle), ObjCId.Nil);
                    block.FrameworkReferences--;
                });
                return;
        }
    }

    /// <summary>A connection as the framework passes it: +0, autoreleased in the current work item.</summary>
    private (FakeObject Connection, Socket GuestEnd) NewConnection(uint port)
    {
        var (host, guest) = Posix.StreamPair();
        var connection = Autoreleased(New("VZVirtioSocketConnection", false, $"port {port}"));
        connection.Descriptor = host;
        connection.ClosesDescriptor = true;
        var guestEnd = Posix.Adopt(guest);
        if (!GuestEnds.TryGetValue(port, out var ends))
        {
            GuestEnds[port] = ends = [];
        }
        ends.Add(guestEnd);
        return (connection, guestEnd);
    }

    private static void CloseConnection(FakeObject connection)
    {
        if (connection.Descriptor is { } descriptor && connection.ClosesDescriptor)
        {
            Posix.Close(descriptor);
            connection.ClosesDescriptor = false;
        }
    }

    private void SetState(FakeObject vm, int state)
    {
        vm.Properties["state"] = state;
        foreach (var (subject, observer) in _observations.ToList())
        {
            if (subject == vm)
            {
                ((IStateObserver)observer.Target!).ValueChanged(new(vm.Handle));
            }
        }
    }

    private static int State(FakeObject vm) => (int)vm.Properties.GetValueOrDefault("state", 0)!;

    private IVirtualMachineDelegate? VmDelegate() =>
        Machine is { WeakDelegate: not 0 } vm && _objects.TryGetValue(vm.WeakDelegate, out var found) && !found.Dead
            ? (IVirtualMachineDelegate?)found.Target
            : null;

    private FakeObject? SocketDevice() => Machine?.References.FirstOrDefault(o => o.Class == "VZVirtioSocketDevice");

    /// <summary>Queues what the framework does later, on the VM's queue.</summary>
    private void Later(Action action) => Queue!.Async(() => Guarded("the framework", () =>
    {
        lock (_lock)
        {
            action();
        }
    }));

    private void Invoke(FakeBlock block, params object[] arguments)
    {
        if (block.CodeReferences == 0 && block.FrameworkReferences == 0)
        {
            Violation($"a {block.Kind} block ran after it was released");
        }
        block.Invocations++;
        block.Callback.DynamicInvoke(arguments);
    }

    private ObjCBlock NewBlock(string kind, Delegate callback)
    {
        lock (_lock)
        {
            var handle = (nint)Interlocked.Increment(ref _nextHandle);
            _blocks[handle] = new FakeBlock(handle, kind, callback);
            return new(handle);
        }
    }

    private ObjCId NewCallbackObject(string cls, object target)
    {
        lock (_lock)
        {
            OnQueueOnly(cls);
            var instance = New(cls, false, "Create…");
            instance.Owned = 1;
            instance.Target = target;
            return new(instance.Handle);
        }
    }

    private FakeObject NewError(FakeError error) => Autoreleased(New("NSError", false, "the framework", error));

    private FakeObject New(string cls, bool isClass, string origin, object? value = null)
    {
        var handle = (nint)Interlocked.Increment(ref _nextHandle) * 16;
        var fake = new FakeObject(handle, cls, isClass, origin) { Value = value };
        _objects[handle] = fake;
        return fake;
    }

    private void Initialize(FakeObject self, string selector, object?[]? arguments = null)
    {
        if (self.IsClass || self.Initialized)
        {
            Violation($"{selector} sent to {self}, which is not freshly allocated");
        }
        self.Initialized = true;
        foreach (var argument in arguments ?? [])
        {
            if (argument is FakeObject value)
            {
                Hold(self, value);
            }
        }
    }

    /// <summary>An init that fails releases what alloc made and returns nil.</summary>
    private FakeObject? Refuse(FakeObject self)
    {
        self.Owned = 0;
        CheckDeath(self);
        return null;
    }

    private FakeObject Autoreleased(FakeObject fake)
    {
        if (_currentPool == 0 || Queue?.IsCurrent != true)
        {
            Violation($"{fake} autoreleased outside any pool");
            return fake;
        }
        fake.Pool = _currentPool;
        _pools[_currentPool].Add(fake);
        return fake;
    }

    private void Hold(FakeObject holder, FakeObject held)
    {
        held.Held++;
        holder.References.Add(held);
    }

    private void Unhold(FakeObject holder, FakeObject held)
    {
        holder.References.Remove(held);
        held.Held--;
        CheckDeath(held);
    }

    private void Release(FakeObject fake)
    {
        if (fake.Owned == 0)
        {
            Violation($"{fake} released more often than it was owned");
            return;
        }
        fake.Owned--;
        CheckDeath(fake);
    }

    private void CheckDeath(FakeObject fake)
    {
        if (fake.Dead || fake.IsClass || fake.Owned > 0 || fake.Held > 0 || fake.Pool is not null)
        {
            return;
        }
        fake.Dead = true;
        if (_observations.Any(o => o.Subject == fake))
        {
            Violation($"{fake} deallocated with observers registered (KVO would crash)");
        }
        if (fake.Class == "NSFileHandle" && fake.Descriptor is { } descriptor && fake.ClosesDescriptor)
        {
            Posix.Close(descriptor);
            FileHandleDescriptors[descriptor] = true;
        }
        if (fake.Class == "VZVirtioSocketConnection")
        {
            CloseConnection(fake);
        }
        if (fake == Machine)
        {
            // The framework drops the answers it never gave.
            foreach (var block in _pendingConnects)
            {
                block.FrameworkReferences--;
            }
            _pendingConnects.Clear();
        }
        foreach (var held in fake.References.ToList())
        {
            Unhold(fake, held);
        }
    }

    private void BeginItem(int pool)
    {
        lock (_lock)
        {
            _currentPool = pool;
            _pools[pool] = [];
        }
    }

    private void EndItem(int pool)
    {
        lock (_lock)
        {
            _currentPool = 0;
            foreach (var fake in _pools[pool])
            {
                fake.Pool = null;
                CheckDeath(fake);
            }
            _pools.Remove(pool);
        }
    }

    private FakeObject? Arg(ObjCId id)
    {
        if (id.IsNil)
        {
            return null;
        }
        lock (_lock)
        {
            return Live(id, "an argument");
        }
    }

    private FakeBlock Block(ObjCBlock block)
    {
        lock (_lock)
        {
            if (!_blocks.TryGetValue(block.Handle, out var fake) || fake.CodeReferences == 0)
            {
                Violation("passed a block the code does not hold");
            }
            return fake!;
        }
    }

    private FakeObject? Live(ObjCId id, string use)
    {
        if (!_objects.TryGetValue(id.Handle, out var fake))
        {
            Violation($"{use}: {id} is no object");
            return null;
        }
        if (fake.Dead)
        {
            Violation($"{use}: {fake} used after it was deallocated");
            return null;
        }
        return fake;
    }

    private FakeQueue QueueOf(DispatchQueue queue)
    {
        lock (_lock)
        {
            return _queues.TryGetValue(queue.Handle, out var fake) ? fake : throw new InvalidOperationException("no such queue");
        }
    }

    private void OnQueueOnly(string what)
    {
        if (Queue?.IsCurrent != true)
        {
            Violation($"{what} off the VM's queue");
        }
    }

    private void Guarded(string what, Action action)
    {
        try
        {
            action();
        }
        catch (Exception e)
        {
            Violation($"{what} threw {e.GetType().Name}: {e.Message}");
        }
    }

    private static ObjCId Id(object? value) => value is FakeObject fake ? new(fake.Handle) : ObjCId.Nil;

    private static string Text(object? value) => (string)value.As<FakeObject>().Value!;

    private void Violation(string message)
    {
        lock (_lock)
        {
            Violations.Add(message);
        }
    }

    [GeneratedRegex("^[0-9a-f]{2}(:[0-9a-f]{2}){5}$", RegexOptions.IgnoreCase)]
    private static partial Regex MacAddress();
}

internal static class FakeArgument
{
    public static T As<T>(this object? value)
        where T : class => value as T ?? throw new InvalidOperationException($"expected a {typeof(T).Name}, got {value ?? "nil"}");
}
