using Lkrun.Cli;
using Lkrun.Engines;
using Lkrun.Services.Hosting;
using Lkrun.Services.Power;
using Lkrun.Spec;

namespace Lkrun.Control;

/// <summary>The control API's view of the VM this lkrun runs: the engine's VM, the shutdown requests and the published ports.</summary>
internal sealed class RunningVmControl(
    string name, VmSpec spec, IRunningVm vm, ShutdownRequests shutdown, HostServices services, DateTimeOffset startedAt) : IVmControl
{
    public VmPowerState PowerState =>
        vm.Exit.IsCompleted ? VmPowerState.Stopped
        : shutdown.IsStopping ? VmPowerState.Stopping
        : vm.IsPaused ? VmPowerState.Paused
        : VmPowerState.Running;

    public bool CanPause => vm.CanPause;

    public IReadOnlyList<PublishedPort> PublishedPorts => services.Ports.Ports;

    public VmInspection Inspect()
    {
        var attachments = services.Attachments;
        var layout = attachments.State;
        IReadOnlyList<VsockDevice> vsock = [.. spec.VsockPorts.Select(port => new VsockDevice(port, layout.GuestVsockSocket(port), Connect: true))];
        var devices = new VmDevices(
            [.. spec.Disks.Select(disk => new BlockDevice(disk.Path, ReadOnly: false))],
            attachments.Network is { } network ? [new NetworkDevice(Nat: true, network.Mac.ToString())] : [],
            vsock,
            [.. spec.SharedDirectories.Select(share => new SharedDirectoryDevice(share.Path, share.Tag, share.ReadOnly))]);
        return new VmInspection(
            (uint)spec.Cpus,
            (ulong)spec.MemoryMiB,
            devices,
            name,
            RunCommand.BackendName(spec.Engine.Kind),
            Environment.ProcessId,
            spec.StateDirectory,
            attachments.Network?.Address.ToString(),
            [.. PublishedPorts.Select(port => port.ToString())],
            vsock,
            startedAt,
            ControlServer.VfkitState(PowerState));
    }

    public void Stop(TimeSpan? timeout) => shutdown.RequestStop(timeout);

    public void StopHard() => shutdown.StopHard("HardStop on the control socket");

    public Task PauseAsync(CancellationToken cancellation) => vm.PauseAsync(cancellation);

    public Task ResumeAsync(CancellationToken cancellation) => vm.ResumeAsync(cancellation);

    public Task<PublishedPort> PublishAsync(string flagValue, CancellationToken cancellation) => services.Ports.PublishAsync(flagValue, cancellation);

    public Task UnpublishAsync(PublishedPort port, CancellationToken cancellation) => services.Ports.UnpublishAsync(port, cancellation);
}
