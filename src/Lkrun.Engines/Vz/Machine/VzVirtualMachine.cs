using Lkrun.Engines.Vz.Catalogue;
using Lkrun.Engines.Vz.Plan;
using Lkrun.Engines.Vz.Runtime;
using Lkrun.Services.Vsock;

namespace Lkrun.Engines.Vz.Machine;

/// <summary><c>VZVirtualMachineState</c> (VZVirtualMachine.h, macOS 14.4 SDK).</summary>
public enum VzMachineState
{
    Stopped = 0,
    Running = 1,
    Paused = 2,
    Error = 3,
    Starting = 4,
    Pausing = 5,
    Resuming = 6,
    Stopping = 7,
    Saving = 8,
    Restoring = 9,
}

/// <summary>
/// A running Virtualization.framework VM. Every call into the framework runs on one private serial queue (the
/// one the VM was made with), and the framework answers there: completion handlers, the VM delegate
/// (<c>guestDidStopVirtualMachine:</c>, <c>virtualMachine:didStopWithError:</c>, network disconnects) and the
/// key-value observer of <c>state</c>. Callers on other threads wait for the queue; nothing here waits while on
/// it, and no task continuation runs on it.
/// <para>
/// How it ends (<see cref="Exit"/>): the guest powering off is a clean exit; <see cref="StopHardAsync"/> is a stop
/// by the host; the framework's error is one line. Before every message that would raise in the wrong state the
/// matching <c>can…</c> property is asked.
/// </para>
/// </summary>
public sealed class VzVirtualMachine : IRunningVm
{
    /// <summary>The label of the VM's queue, as debuggers show it.</summary>
    public const string QueueLabel = "dev.lkrun.virtual-machine";

    /// <summary><c>NSKeyValueObservingOptionNew</c>.</summary>
    private const nuint ObserveNewValues = 1;

    private const string StateKeyPath = "state";

    /// <summary>How long disposing a VM that still runs waits for its forced stop.</summary>
    private static readonly TimeSpan DisposeStopTimeout = TimeSpan.FromSeconds(10);

    private readonly Foundation _foundation;
    private readonly IObjCRuntime _runtime;
    private readonly DispatchQueue _queue;
    private readonly Action<string> _notice;
    private readonly TaskCompletionSource<VmExit> _exit = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>Held while queuing work, so that nothing is queued once the queue is released.</summary>
    private readonly object _gate = new();
    private bool _released;
    private ObjCId _vm;
    private ObjCId _delegate;
    private ObjCId _observer;
    private VzSocketDevice? _sockets;
    private int _state;
    private bool _stopWhenStarted;
    private int _disposed;

    private VzVirtualMachine(Foundation foundation, DispatchQueue queue, Action<string> notice)
    {
        _foundation = foundation;
        _runtime = foundation.Runtime;
        _queue = queue;
        _notice = notice;
    }

    /// <summary>
    /// Builds the VM that <paramref name="plan"/> describes on a new queue and starts it; returns once the
    /// framework says it started. Throws <see cref="EngineException"/> with one line when it cannot, having
    /// released everything it made.
    /// </summary>
    public static async Task<VzVirtualMachine> StartAsync(
        IObjCRuntime runtime, VzPlan plan, MacOSVersion host, Action<string> notice, CancellationToken cancellation)
    {
        var foundation = new Foundation(runtime);
        var machine = new VzVirtualMachine(foundation, runtime.CreateSerialQueue(QueueLabel), notice);
        try
        {
            runtime.DispatchSync(machine._queue, () => machine.Build(plan, host));
            await machine.StartOnQueueAsync(cancellation);
            return machine;
        }
        catch
        {
            await machine.DisposeAsync();
            throw;
        }
    }

    public Task<VmExit> Exit => _exit.Task;

    public Task Stopped => _exit.Task;

    public VzMachineState State => (VzMachineState)Volatile.Read(ref _state);

    /// <summary>The VM's vsock device, for lkrun's fd vsock transport.</summary>
    public IGuestSocketDevice? SocketDevice => _sockets;

    public bool CanPause => true;

    public bool IsPaused => State == VzMachineState.Paused;

    /// <summary>
    /// Asks the guest to power off (<c>requestStopWithError:</c>, an ACPI power-button press on x86 guests). A guest
    /// without a handler ignores it; pressing again is allowed, and a VM that cannot take the request now (still
    /// starting, already stopping) is left alone. A paused VM is resumed first, so that its guest can answer.
    /// </summary>
    public async Task PressPowerButtonAsync(CancellationToken cancellation)
    {
        if (IsPaused)
        {
            await ResumeAsync(cancellation);
        }
        OnQueueUnlessGone(() =>
        {
            if (!Flag("canRequestStop"))
            {
                return;
            }
            if (!_runtime.SendErrorOutReturnsBool(_vm, Sel("requestStopWithError:"), out var error))
            {
                _notice($"the power button could not be pressed: {_foundation.Describe(error)}");
            }
        });
    }

    /// <summary>
    /// Stops the VM at once (<c>stopWithCompletionHandler:</c>, macOS 12); a VM still starting is stopped as soon as
    /// it has started. Completes when the framework has answered.
    /// </summary>
    public async Task StopHardAsync(CancellationToken cancellation)
    {
        var answered = new TaskCompletionSource<string?>(TaskCreationOptions.RunContinuationsAsynchronously);
        if (!OnQueueUnlessGone(() => StopOnQueue(answered)))
        {
            return;
        }
        if (await answered.Task.WaitAsync(cancellation) is { } failure)
        {
            _exit.TrySetResult(new VmExit(VmExitReason.Crashed, failure));
        }
    }

    /// <summary>Pauses the guest's CPUs (<c>pauseWithCompletionHandler:</c>).</summary>
    public Task PauseAsync(CancellationToken cancellation) => TransitionAsync("canPause", "pauseWithCompletionHandler:", "pause", cancellation);

    /// <summary>Resumes a paused guest (<c>resumeWithCompletionHandler:</c>).</summary>
    public Task ResumeAsync(CancellationToken cancellation) => TransitionAsync("canResume", "resumeWithCompletionHandler:", "resume", cancellation);

    /// <summary>
    /// Stops a VM that still runs (waiting a bounded time for the framework), then releases the vsock device, the
    /// delegate, the observer, the VM and the queue, in that order, on the queue.
    /// </summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }
        if (!_vm.IsNil && !_exit.Task.IsCompleted && State is not (VzMachineState.Stopped or VzMachineState.Error))
        {
            try
            {
                await StopHardAsync(CancellationToken.None).WaitAsync(DisposeStopTimeout);
            }
            catch (TimeoutException)
            {
                _notice($"virtualization.framework did not stop the VM within {DisposeStopTimeout.TotalSeconds:0} s; releasing it anyway");
            }
        }
        lock (_gate)
        {
            _runtime.DispatchSync(_queue, ReleaseOnQueue);
            _released = true;
            _runtime.ReleaseQueue(_queue);
        }
        _exit.TrySetResult(new VmExit(VmExitReason.StoppedByHost));
    }

    /// <summary>On the queue: runs the plan, then attaches the delegate, the state observer and the vsock device.</summary>
    private void Build(VzPlan plan, MacOSVersion host)
    {
        _vm = VzPlanExecutor.Execute(_foundation, plan, _queue, host);
        var events = new Events(this);
        _delegate = _runtime.CreateVirtualMachineDelegate(events);
        // The delegate property is weak: this object keeps its own reference until ReleaseOnQueue.
        _runtime.SendObjectReturnsVoid(_vm, Sel("setDelegate:"), _delegate);
        _observer = _runtime.CreateStateObserver(events);
        _runtime.SendObjectObjectUnsignedPointerReturnsVoid(
            _vm, Sel("addObserver:forKeyPath:options:context:"), _observer, _foundation.String(StateKeyPath), ObserveNewValues, 0);
        var devices = _runtime.SendReturnsObject(_vm, Sel("socketDevices"));
        if (_runtime.SendReturnsUnsigned(devices, Sel("count")) > 0)
        {
            var device = _foundation.Retain(_runtime.SendUnsignedReturnsObject(devices, Sel("objectAtIndex:"), 0));
            _sockets = new VzSocketDevice(_foundation, _queue, device, IsRunningOnQueue, _notice);
        }
        Volatile.Write(ref _state, (int)_runtime.SendReturnsInteger(_vm, Sel("state")));
    }

    private async Task StartOnQueueAsync(CancellationToken cancellation)
    {
        var started = new TaskCompletionSource<string?>(TaskCreationOptions.RunContinuationsAsynchronously);
        _runtime.DispatchSync(_queue, () =>
        {
            if (!Flag("canStart"))
            {
                started.TrySetResult($"virtualization.framework cannot start the VM in its state {State}");
                return;
            }
            SendWithCompletion("startWithCompletionHandler:", error =>
            {
                if (!error.IsNil)
                {
                    started.TrySetResult(Failure("start the VM", error));
                    return;
                }
                started.TrySetResult(null);
                if (_stopWhenStarted && !_vm.IsNil)
                {
                    StopOnQueue(null);
                }
            });
        });
        if (await started.Task.WaitAsync(cancellation) is { } failure)
        {
            throw new EngineException(failure);
        }
    }

    /// <summary>On the queue: stops the VM, or marks it to stop once its start completes.</summary>
    private void StopOnQueue(TaskCompletionSource<string?>? answered)
    {
        if (_exit.Task.IsCompleted)
        {
            answered?.TrySetResult(null);
            return;
        }
        if (!Flag("canStop"))
        {
            _stopWhenStarted = State == VzMachineState.Starting;
            answered?.TrySetResult(null);
            return;
        }
        SendWithCompletion("stopWithCompletionHandler:", error =>
        {
            if (error.IsNil)
            {
                _exit.TrySetResult(new VmExit(VmExitReason.StoppedByHost));
                answered?.TrySetResult(null);
            }
            else
            {
                answered?.TrySetResult(Failure("stop the VM", error));
            }
        });
    }

    private async Task TransitionAsync(string guard, string selector, string verb, CancellationToken cancellation)
    {
        var answered = new TaskCompletionSource<string?>(TaskCreationOptions.RunContinuationsAsynchronously);
        var queued = OnQueueUnlessGone(() =>
        {
            if (!Flag(guard))
            {
                answered.TrySetResult($"the VM cannot {verb} in its state {State}");
                return;
            }
            SendWithCompletion(selector, error => answered.TrySetResult(error.IsNil ? null : Failure($"{verb} the VM", error)));
        });
        if (!queued)
        {
            throw new EngineException($"the VM cannot {verb}: it is gone");
        }
        if (await answered.Task.WaitAsync(cancellation) is { } failure)
        {
            throw new EngineException(failure);
        }
    }

    /// <summary>On the queue: sends a one-block message; the framework keeps its own copy of the block while it needs one.</summary>
    private void SendWithCompletion(string selector, Action<ObjCId> completed)
    {
        var block = _runtime.CreateCompletionBlock(completed);
        try
        {
            _runtime.SendBlockReturnsVoid(_vm, Sel(selector), block);
        }
        finally
        {
            _runtime.ReleaseBlock(block);
        }
    }

    /// <summary>Runs <paramref name="work"/> on the queue and waits, unless the VM was released or never made.</summary>
    private bool OnQueueUnlessGone(Action work)
    {
        lock (_gate)
        {
            if (_released || _vm.IsNil)
            {
                return false;
            }
            _runtime.DispatchSync(_queue, work);
            return true;
        }
    }

    private void ReleaseOnQueue()
    {
        _sockets?.CloseOnQueue();
        _sockets = null;
        if (!_observer.IsNil)
        {
            _runtime.SendObjectObjectReturnsVoid(_vm, Sel("removeObserver:forKeyPath:"), _observer, _foundation.String(StateKeyPath));
            _runtime.ReleaseCallbackObject(_observer);
            _observer = ObjCId.Nil;
        }
        if (!_delegate.IsNil)
        {
            _runtime.SendObjectReturnsVoid(_vm, Sel("setDelegate:"), ObjCId.Nil);
            _runtime.ReleaseCallbackObject(_delegate);
            _delegate = ObjCId.Nil;
        }
        _foundation.Release(_vm);
        _vm = ObjCId.Nil;
    }

    private bool Flag(string property) => _runtime.SendReturnsBool(_vm, Sel(property));

    private bool IsRunningOnQueue() => (VzMachineState)_runtime.SendReturnsInteger(_vm, Sel("state")) == VzMachineState.Running;

    private Selector Sel(string name) => _foundation.Selector(name);

    private string Failure(string what, ObjCId error)
    {
        var description = _foundation.Describe(error);
        return VzErrors.IsMissingEntitlement(description)
            ? VzErrors.MissingEntitlement(Environment.ProcessPath)
            : $"virtualization.framework could not {what}: {description}";
    }

    /// <summary>The framework's callbacks, on the queue.</summary>
    private sealed class Events(VzVirtualMachine machine) : IVirtualMachineDelegate, IStateObserver
    {
        public void GuestDidStop() => machine._exit.TrySetResult(new VmExit(VmExitReason.GuestPoweredOff));

        public void DidStopWithError(ObjCId error) =>
            machine._exit.TrySetResult(new VmExit(VmExitReason.Crashed, $"the VM stopped: {machine._foundation.Describe(error)}"));

        public void NetworkAttachmentWasDisconnected(ObjCId error) =>
            machine._notice($"the VM's network link was disconnected: {machine._foundation.Describe(error)}");

        public void ValueChanged(ObjCId observed) =>
            Volatile.Write(ref machine._state, (int)machine._runtime.SendReturnsInteger(observed, machine.Sel("state")));
    }
}
