using System.Runtime.InteropServices;
using Lkrun.Engines.Vz.Catalogue;
using Lkrun.Services.Interop;
using Lkrun.Engines.Vz.Plan;
using Lkrun.Engines.Vz.Runtime;

namespace Lkrun.Engines.Vz.Machine;

/// <summary>
/// Runs a <see cref="VzPlan"/> over the Objective-C runtime and returns the virtual machine it builds. It runs on
/// the VM's queue, inside one work item, so the autoreleased strings, URLs and arrays live until the VM has copied
/// the configuration. Every message goes through the shape the catalogue gives its selector, after a check that
/// the class exists and the receiver responds to it (sending anything else raises an Objective-C exception,
/// which must never reach .NET). On failure every object made so far is released, every descriptor duplicated
/// for a file handle that was not made is closed, and one line says which part of the VM failed and why.
/// </summary>
public sealed class VzPlanExecutor
{
    private readonly Foundation _foundation;
    private readonly IObjCRuntime _runtime;
    private readonly DispatchQueue _queue;
    private readonly MacOSVersion _host;

    /// <summary>The +1 objects made so far, in order, by name.</summary>
    private readonly List<(string Name, ObjCId Object)> _owned = [];

    /// <summary>The arrays made so far (+0, in the work item's pool).</summary>
    private readonly Dictionary<string, ObjCId> _arrays = new(StringComparer.Ordinal);

    /// <summary>Duplicates passed to the step in flight, closed unless the file handle that owns them was made.</summary>
    private readonly List<int> _pendingDescriptors = [];

    private VzPlanExecutor(Foundation foundation, DispatchQueue queue, MacOSVersion host)
    {
        _foundation = foundation;
        _runtime = foundation.Runtime;
        _queue = queue;
        _host = host;
    }

    /// <summary>
    /// Runs every step of <paramref name="plan"/>; call it on <paramref name="queue"/>. Returns the (+1)
    /// <c>VZVirtualMachine</c>; throws <see cref="EngineException"/> with nothing left behind.
    /// </summary>
    public static ObjCId Execute(Foundation foundation, VzPlan plan, DispatchQueue queue, MacOSVersion host)
    {
        var executor = new VzPlanExecutor(foundation, queue, host);
        try
        {
            foreach (var step in plan.Steps)
            {
                executor.Run(step);
            }
            return executor.Take(VzPlan.VirtualMachine);
        }
        finally
        {
            executor.ReleaseAll();
        }
    }

    private void Run(VzStep step)
    {
        if (step.Minimum > _host)
        {
            throw Failure(step, $"needs macOS {step.Minimum} or newer; this Mac runs {_host}");
        }
        switch (step)
        {
            case VzCreate create:
                _owned.Add((create.Name, Create(create)));
                break;
            case VzSend send:
                Send(step, Receiver(step, send.Receiver), send.Message, send.Arguments, out _);
                break;
            case VzCheck check:
                if (!Send(step, Receiver(step, check.Receiver), check.Message, check.Arguments, out var error).Flag)
                {
                    throw Failure(step, _foundation.Describe(error));
                }
                break;
            case VzArray array:
                _arrays[array.Name] = _foundation.Array(array.Items.Select(item => Lookup(step, item)).ToArray());
                break;
            case VzSaveData save:
                Save(step, save);
                break;
            default:
                throw new InvalidOperationException($"no executor for {step.GetType().Name}");
        }
    }

    private ObjCId Create(VzCreate step)
    {
        var cls = Class(step, step.Class);
        var allocated = _runtime.SendReturnsObject(cls, _foundation.Selector("alloc"));
        if (allocated.IsNil)
        {
            throw Failure(step, $"{step.Class} alloc returned nil");
        }
        Result result;
        ObjCId error;
        try
        {
            result = Send(step, allocated, step.Initializer, step.Arguments, out error);
        }
        catch
        {
            // Nothing was sent: what alloc made is still ours.
            _foundation.Release(allocated);
            CloseDescriptors();
            throw;
        }
        if (result.Object.IsNil)
        {
            // A failed init has released what alloc made.
            CloseDescriptors();
            throw Failure(step, error.IsNil ? $"{step.Class} {step.Initializer} refused it" : _foundation.Describe(error));
        }
        // The file handle made in this step owns its duplicate now.
        _pendingDescriptors.Clear();
        return result.Object;
    }

    private void Save(VzStep step, VzSaveData save)
    {
        var receiver = Receiver(step, save.Receiver);
        var data = Send(step, receiver, save.Message, [], out _).Object;
        if (data.IsNil)
        {
            throw Failure(step, $"{save.Message} returned nil");
        }
        var partial = save.Path + ".partial";
        try
        {
            File.WriteAllBytes(partial, _foundation.Bytes(data));
            File.Move(partial, save.Path, overwrite: true);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            File.Delete(partial);
            throw Failure(step, $"cannot write it ({e.Message})");
        }
    }

    /// <summary>What a message returned: an object, a BOOL, or nothing.</summary>
    private readonly record struct Result(ObjCId Object, bool Flag);

    /// <summary>
    /// Sends <paramref name="name"/> through its catalogued shape. Every argument is converted to the C type its
    /// kind needs before anything is sent, so an exception from here means nothing was sent.
    /// </summary>
    private Result Send(VzStep step, ObjCId receiver, string name, IReadOnlyList<VzArgument> arguments, out ObjCId error)
    {
        var info = VzCatalogue.Selector(name);
        var kinds = MessageShapes.Of(info.Shape).Arguments.Where(kind => kind != ArgumentKind.ErrorOut).ToArray();
        if (arguments.Count != kinds.Length)
        {
            throw new InvalidOperationException($"{name} takes {kinds.Length} arguments; the plan gives {arguments.Count}");
        }
        var selector = _foundation.Selector(name);
        if (!_runtime.RespondsTo(receiver, selector))
        {
            throw Failure(step, $"this macOS does not answer {name}");
        }
        var a = new Value[kinds.Length];
        for (var i = 0; i < kinds.Length; i++)
        {
            a[i] = Convert(step, kinds[i], arguments[i]);
        }

        error = ObjCId.Nil;
        var rt = _runtime;
        switch (info.Shape)
        {
            case MessageShape.ReturnsObject:
                return new(rt.SendReturnsObject(receiver, selector), false);
            case MessageShape.ObjectReturnsObject:
                return new(rt.SendObjectReturnsObject(receiver, selector, a[0].Object), false);
            case MessageShape.ObjectReturnsVoid:
                rt.SendObjectReturnsVoid(receiver, selector, a[0].Object);
                return default;
            case MessageShape.UnsignedReturnsVoid:
                rt.SendUnsignedReturnsVoid(receiver, selector, (nuint)a[0].Unsigned);
                return default;
            case MessageShape.UInt64ReturnsVoid:
                rt.SendUInt64ReturnsVoid(receiver, selector, a[0].Unsigned);
                return default;
            case MessageShape.IntegerReturnsVoid:
                rt.SendIntegerReturnsVoid(receiver, selector, (nint)a[0].Integer);
                return default;
            case MessageShape.ErrorOutReturnsBool:
                return new(ObjCId.Nil, rt.SendErrorOutReturnsBool(receiver, selector, out error));
            case MessageShape.ObjectErrorOutReturnsBool:
                return new(ObjCId.Nil, rt.SendObjectErrorOutReturnsBool(receiver, selector, a[0].Object, out error));
            case MessageShape.ObjectObjectReturnsObject:
                return new(rt.SendObjectObjectReturnsObject(receiver, selector, a[0].Object, a[1].Object), false);
            case MessageShape.ObjectQueueReturnsObject:
                return new(rt.SendObjectQueueReturnsObject(receiver, selector, a[0].Object, _queue), false);
            case MessageShape.ObjectBoolReturnsObject:
                return new(rt.SendObjectBoolReturnsObject(receiver, selector, a[0].Object, a[1].Flag), false);
            case MessageShape.ObjectBoolErrorOutReturnsObject:
                return new(rt.SendObjectBoolErrorOutReturnsObject(receiver, selector, a[0].Object, a[1].Flag, out error), false);
            case MessageShape.ObjectBoolIntegerIntegerErrorOutReturnsObject:
                return new(rt.SendObjectBoolIntegerIntegerErrorOutReturnsObject(
                    receiver, selector, a[0].Object, a[1].Flag, (nint)a[2].Integer, (nint)a[3].Integer, out error), false);
            case MessageShape.ObjectUnsignedErrorOutReturnsObject:
                return new(rt.SendObjectUnsignedErrorOutReturnsObject(receiver, selector, a[0].Object, (nuint)a[1].Unsigned, out error), false);
            case MessageShape.Int32BoolReturnsObject:
                return new(rt.SendInt32BoolReturnsObject(receiver, selector, a[0].Int32, a[1].Flag), false);
            default:
                throw new InvalidOperationException($"plan steps do not send {info.Shape} messages ({name})");
        }
    }

    /// <summary>One converted argument; the field its kind uses is set.</summary>
    private readonly record struct Value(ObjCId Object = default, long Integer = 0, ulong Unsigned = 0, bool Flag = false, int Int32 = 0);

    /// <summary>A plan argument as the C value its kind needs; a plan argument of another kind is a bug in the planner.</summary>
    private Value Convert(VzStep step, ArgumentKind kind, VzArgument argument) => (kind, argument) switch
    {
        (ArgumentKind.Object, _) => new(Object: Object(step, argument)),
        (ArgumentKind.Queue, VzQueue) => default,
        (ArgumentKind.Bool, VzBool flag) => new(Flag: flag.Value),
        (ArgumentKind.Integer, VzInteger integer) => new(Integer: integer.Value),
        (ArgumentKind.Unsigned, VzUnsigned unsigned) => new(Unsigned: unsigned.Value),
        (ArgumentKind.UInt64, VzUInt64 value) => new(Unsigned: value.Value),
        (ArgumentKind.Int32, VzDuplicatedDescriptor descriptor) => new(Int32: Duplicate(step, descriptor)),
        _ => throw new InvalidOperationException($"{step}: {argument} cannot be passed as {kind}"),
    };

    /// <summary>An object argument: one made earlier, a class, or a Foundation value made here (+0).</summary>
    private ObjCId Object(VzStep step, VzArgument argument) => argument switch
    {
        VzObjectRef reference => Lookup(step, reference.Name),
        VzClassRef cls => Class(step, cls.Class),
        VzString text => _foundation.String(text.Value),
        VzFileUrl url => _foundation.FileUrl(url.Path),
        VzData data => _foundation.Data(data.Bytes.ToArray()),
        VzNil => ObjCId.Nil,
        _ => throw new InvalidOperationException($"{argument} is not an object"),
    };

    private ObjCId Receiver(VzStep step, VzArgument receiver) => Object(step, receiver) is { IsNil: false } id
        ? id
        : throw new InvalidOperationException($"{step}: nil receiver");

    private ObjCId Lookup(VzStep step, string name)
    {
        foreach (var (ownedName, owned) in _owned)
        {
            if (ownedName == name)
            {
                return owned;
            }
        }
        return _arrays.TryGetValue(name, out var array) ? array : throw new InvalidOperationException($"{step}: nothing named {name} was made before");
    }

    private ObjCId Class(VzStep step, string name)
    {
        var cls = _foundation.Class(name);
        return cls.IsNil ? throw Failure(step, $"this macOS has no {name} (it needs macOS {VzCatalogue.Class(name).Minimum})") : cls;
    }

    private int Duplicate(VzStep step, VzDuplicatedDescriptor argument)
    {
        int duplicate;
        try
        {
            duplicate = Descriptors.DuplicateCloseOnExec(argument.Descriptor);
        }
        catch (SystemCallException e)
        {
            throw Failure(step, $"cannot duplicate descriptor {argument.Descriptor}: {Marshal.GetPInvokeErrorMessage(e.Errno)}");
        }
        _pendingDescriptors.Add(duplicate);
        return duplicate;
    }

    private void CloseDescriptors()
    {
        foreach (var descriptor in _pendingDescriptors)
        {
            Descriptors.Close(descriptor);
        }
        _pendingDescriptors.Clear();
    }

    private ObjCId Take(string name)
    {
        var index = _owned.FindIndex(entry => entry.Name == name);
        if (index < 0)
        {
            throw new InvalidOperationException($"the plan made no {name}");
        }
        var taken = _owned[index].Object;
        _owned.RemoveAt(index);
        return taken;
    }

    /// <summary>Releases the configuration's objects in reverse order; the VM holds its own copy of what it needs.</summary>
    private void ReleaseAll()
    {
        for (var i = _owned.Count - 1; i >= 0; i--)
        {
            _foundation.Release(_owned[i].Object);
        }
        _owned.Clear();
    }

    private static EngineException Failure(VzStep step, string reason)
    {
        if (VzErrors.IsMissingEntitlement(reason))
        {
            return new EngineException(VzErrors.MissingEntitlement(Environment.ProcessPath));
        }
        return new EngineException($"virtualization.framework: {step.Subject}: {reason}");
    }
}
