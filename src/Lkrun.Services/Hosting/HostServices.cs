using System.Net.Sockets;
using System.Runtime.InteropServices;
using Lkrun.Services.Boot;
using Lkrun.Services.Console;
using Lkrun.Services.Disks;
using Lkrun.Services.Interop;
using Lkrun.Services.Metadata;
using Lkrun.Services.Network;
using Lkrun.Services.Network.Leases;
using Lkrun.Services.Network.Links;
using Lkrun.Services.State;
using Lkrun.Services.Virtiofs;
using Lkrun.Services.Vsock;
using Lkrun.Spec;

namespace Lkrun.Services.Hosting;

/// <summary>
/// How the console relay meets the user: where the guest's output goes, and what reads the keyboard. Terminals
/// attach with <c>lkrun console</c> unless <paramref name="AttachRefusal"/> says why not (the console is on
/// <c>lkrun run</c>'s own terminal).
/// </summary>
public sealed record ConsoleSettings(
    Stream Output,
    Stream? Input,
    Action<ConsoleCommand> OnCommand,
    Action<IOException> OnOutputLost,
    string? AttachRefusal = null);

/// <summary>
/// What was checked against the host before anything was created, and is held until the services start: the
/// network's checks and lease registry, the opened metadata (a FIFO is read once), and the virtiofsd that serves
/// the shares.
/// </summary>
public sealed class HostPreflight : IDisposable
{
    internal HostPreflight(VmSpec spec, HostServiceNeeds needs, NetworkSetup? network, MetadataSource? metadata, Virtiofsd? virtiofsd)
    {
        Spec = spec;
        Needs = needs;
        Network = network;
        Metadata = metadata;
        Virtiofsd = virtiofsd;
    }

    internal VmSpec Spec { get; }

    internal HostServiceNeeds Needs { get; }

    internal NetworkSetup? Network { get; }

    internal MetadataSource? Metadata { get; }

    internal Virtiofsd? Virtiofsd { get; }

    public void Dispose()
    {
        Network?.Dispose();
        Metadata?.Dispose();
    }
}

/// <summary>
/// The host services of one VM, started in order before the engine starts the VM and stopped in reverse order
/// after it ended: the state dir's files (spec, identity, disks, metadata CD, kernel), the console relay, the
/// vsock device, the shares' virtiofsd and the network (the VM's own NAT network, or its link to a shared one).
/// <see cref="Failure"/> reports a service that dies while the VM runs.
/// </summary>
public sealed class HostServices : IAsyncDisposable
{
    /// <summary>The guest's vsock CID, as Virtualization.framework and hyperkit give it.</summary>
    public const uint GuestCid = 3;

    private readonly List<IAsyncDisposable> _started = [];
    private readonly TaskCompletionSource<string> _failure = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly HostPreflight _preflight;

    private HostServices(HostPreflight preflight) => _preflight = preflight;

    /// <summary>The VM's endpoints, for the engine.</summary>
    public VmAttachments Attachments { get; private set; } = null!;

    /// <summary>The ports the VM publishes, which can change while it runs.</summary>
    public RuntimePorts Ports { get; private set; } = null!;

    /// <summary>Completes with one line naming the service when a long-running service fails on its own.</summary>
    public Task<string> Failure => _failure.Task;

    /// <summary>
    /// Checks, creating nothing, what the services need from the host for <paramref name="spec"/>: libslirp,
    /// disks it can use, published ports that are free, a fixed address nobody runs with, a data file that opens,
    /// virtiofsd.
    /// </summary>
    public static HostPreflight Check(VmSpec spec, HostServiceNeeds needs, LeaseRegistry leases)
    {
        NetworkSetup? network = null;
        MetadataSource? metadata = null;
        try
        {
            DiskImages.Check(spec.Disks);
            network = needs.Network is null ? null : NetworkSetup.Check(spec.Network, spec.StateDirectory, leases);
            metadata = spec.Metadata is null ? null : MetadataSource.Open(spec.Metadata);
            var virtiofsd = needs.SharedDirectories is null ? null : VirtiofsShares.Check(spec.SharedDirectories);
            return new HostPreflight(spec, needs, network, metadata, virtiofsd);
        }
        catch
        {
            network?.Dispose();
            metadata?.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Prepares the state dir and starts every service the plan needs. When something fails, what started is
    /// stopped again and the error is rethrown; the caller rolls the state dir back.
    /// </summary>
    public static async Task<HostServices> StartAsync(
        HostPreflight preflight, StateDirectory state, ConsoleSettings console, Action<string> notice, CancellationToken cancellation)
    {
        var services = new HostServices(preflight);
        try
        {
            services.Attachments = await services.StartAllAsync(state, console, notice, cancellation);
            return services;
        }
        catch
        {
            await services.DisposeAsync();
            throw;
        }
    }

    /// <summary>Stops the services in the reverse order of their start.</summary>
    public async ValueTask DisposeAsync()
    {
        for (var i = _started.Count - 1; i >= 0; i--)
        {
            await _started[i].DisposeAsync();
        }
        _started.Clear();
    }

    private async Task<VmAttachments> StartAllAsync(StateDirectory state, ConsoleSettings console, Action<string> notice, CancellationToken cancellation)
    {
        var spec = _preflight.Spec;
        var layout = state.Layout;
        File.WriteAllText(layout.Spec, VmSpecJson.Serialize(spec));
        var uuid = VmIdentity.LoadOrCreate(state);
        foreach (var created in DiskImages.CreateMissing(spec.Disks, notice))
        {
            state.TrackCreated(created);
        }
        var metadataIso = _preflight.Metadata is { } metadata ? await WriteMetadataAsync(metadata, uuid, state, cancellation) : null;
        var kernel = spec.Boot switch
        {
            KernelInitrdBoot boot => PrepareKernel(boot.Kernel, layout, notice),
            KernelSquashfsBoot boot => PrepareKernel(boot.Kernel, layout, notice),
            _ => null,
        };

        var attachments = new VmAttachments { Uuid = uuid, State = layout, Kernel = kernel, MetadataIso = metadataIso };
        attachments = StartConsole(attachments, console);
        attachments = StartVsock(attachments, spec.VsockPorts, notice);
        attachments = await StartSharesAsync(attachments, spec.SharedDirectories, cancellation);
        return StartNetwork(attachments, state, notice);
    }

    private VmAttachments StartConsole(VmAttachments attachments, ConsoleSettings console)
    {
        var layout = attachments.State;
        var attachPoint = new ConsoleAttachPoint(layout.ConsoleSocket, console.AttachRefusal);
        switch (_preflight.Needs.Console)
        {
            case ConsoleTransport.ListeningSockets:
                string[] sockets = [layout.SerialConsoleSocket, layout.VirtioConsoleSocket];
                Started(ConsoleRelay.Start(
                    [.. sockets.Select(ConsoleDevice.Listening)], console.Output, console.Input, console.OnCommand, console.OnOutputLost, attachPoint));
                return attachments with { ConsoleSockets = sockets };
            case ConsoleTransport.SocketPair:
                var (relayEnd, engineEnd) = SocketPair.Create(SocketPair.Stream);
                Started(ConsoleRelay.Start(
                    [ConsoleDevice.Connected(new Socket(relayEnd))], console.Output, console.Input, console.OnCommand, console.OnOutputLost, attachPoint));
                Started(new HandleOwner(engineEnd));
                return attachments with { ConsoleSocket = engineEnd };
            default:
                throw new ArgumentOutOfRangeException(nameof(attachments), _preflight.Needs.Console, "unknown console transport");
        }
    }

    /// <summary>The vsock device is always there, so a guest can reach the host's 00000002.PORT sockets without -vsock-ports.</summary>
    private VmAttachments StartVsock(VmAttachments attachments, IReadOnlyList<uint> exposedPorts, Action<string> notice)
    {
        var layout = attachments.State;
        var frontEnd = Started(UnixSocketFrontEnd.Create(layout, exposedPorts, notice));
        switch (_preflight.Needs.Vsock)
        {
            case VsockTransport.VhostUser:
                var device = Started(VsockDevice.Start(frontEnd, layout.VsockDeviceSocket, GuestCid, notice));
                Observe(device.Completion);
                return attachments with { VsockSocket = layout.VsockDeviceSocket };
            case VsockTransport.Streams:
                return attachments with { GuestSockets = new GuestSocketsAttachment(this, frontEnd) };
            default:
                throw new ArgumentOutOfRangeException(nameof(attachments), _preflight.Needs.Vsock, "unknown vsock transport");
        }
    }

    /// <summary>The <c>-virtiofs</c> shares' virtiofsd, each waiting on its socket before the VM starts.</summary>
    private async Task<VmAttachments> StartSharesAsync(
        VmAttachments attachments, IReadOnlyList<SharedDirectorySpec> shares, CancellationToken cancellation)
    {
        switch (_preflight.Needs.SharedDirectories)
        {
            case null:
                return attachments;
            case SharedDirectoryTransport.VhostUser:
                var virtiofs = Started(await VirtiofsShares.StartAsync(_preflight.Virtiofsd!, shares, attachments.State, cancellation));
                Observe(virtiofs.Completion);
                return attachments with { SharedDirectories = virtiofs.Attachments };
            default:
                throw new ArgumentOutOfRangeException(nameof(attachments), _preflight.Needs.SharedDirectories, "unknown shared directory transport");
        }
    }

    private VmAttachments StartNetwork(VmAttachments attachments, StateDirectory state, Action<string> notice)
    {
        var layout = attachments.State;
        Ports = new RuntimePorts(null, _preflight.Spec.Network.Mode, _preflight.Spec.Network.PublishedPorts);
        if (_preflight.Needs.Network is not { } link)
        {
            // An engine that brings its own network still gives the interface lkrun's stable MAC.
            return _preflight.Spec.Network.Mode == NetworkMode.None ? attachments : attachments with { Mac = StableMacAddress.LoadOrCreate(state) };
        }
        SafeSocketHandle? deviceEnd = null;
        FrameLinkEndpoint endpoint;
        switch (link)
        {
            case NetworkLink.Stream:
                endpoint = new StreamLinkEndpoint(layout.NetworkSocket);
                break;
            case NetworkLink.DatagramPaths:
                endpoint = new DatagramPathsEndpoint(layout.NetworkSocket, layout.NetworkDeviceSocket);
                break;
            case NetworkLink.DatagramSocketPair:
                var (networkEnd, engineEnd) = DatagramSocketPair.Create();
                Started(new HandleOwner(engineEnd));
                deviceEnd = engineEnd;
                endpoint = new DatagramSocketEndpoint(networkEnd);
                break;
            default:
                throw new ArgumentOutOfRangeException(nameof(attachments), link, "unknown network link");
        }
        var guestNetwork = _preflight.Network!.Attach(state, attachments.Uuid, notice, endpoint) is { } attached ? attached with { Mtu = Math.Min(attached.Mtu, _preflight.Needs.NetworkMtu) } : null;
        if (guestNetwork is null)
        {
            return attachments;
        }
        // The network listens before the VM starts, so the engine finds it when it connects.
        var network = Started(_preflight.Network!.Start(guestNetwork, notice));
        Observe(network.Completion);
        Ports = new RuntimePorts(network, _preflight.Spec.Network.Mode, _preflight.Spec.Network.PublishedPorts);
        return attachments with { Network = guestNetwork, NetworkDevice = deviceEnd, Mac = guestNetwork.Mac };
    }

    private BootKernel PrepareKernel(string kernel, StateLayout layout, Action<string> notice) => _preflight.Needs.X86KernelEntry is { } entry
        ? KernelBoot.Prepare(kernel, entry, layout.InflatedKernel, KernelCache.ForCurrentUser(), notice)
        : BootKernel.AsIs(KernelImage.Uncompressed(kernel, layout.InflatedKernel));

    private T Started<T>(T service)
        where T : IAsyncDisposable
    {
        _started.Add(service);
        return service;
    }

    /// <summary>
    /// Turns a service's completion into <see cref="Failure"/> when it faults on its own; a service's failure is one
    /// line that names it (<c>the NAT network stopped: ...</c>).
    /// </summary>
    private void Observe(Task completion) =>
        completion.ContinueWith(
            task => _failure.TrySetResult(task.Exception!.InnerException!.Message),
            CancellationToken.None,
            TaskContinuationOptions.OnlyOnFaulted | TaskContinuationOptions.ExecuteSynchronously,
            TaskScheduler.Default);

    /// <summary>Starts the stream vsock transport over the engine's device, as one more service of this VM.</summary>
    private sealed class GuestSocketsAttachment(HostServices services, UnixSocketFrontEnd frontEnd) : IGuestSocketsAttachment
    {
        public void Attach(IGuestSocketDevice device)
        {
            // The engine attaches while the VM starts, on the launcher's own flow, before anything disposes the services.
            var transport = services.Started(VsockStreamTransport.Start(frontEnd, device));
            services.Observe(transport.Completion);
        }
    }

    /// <summary>Closes a descriptor handed to the engine once the VM is gone (the engine duplicates what it keeps).</summary>
    private sealed class HandleOwner(SafeHandle handle) : IAsyncDisposable
    {
        public ValueTask DisposeAsync()
        {
            handle.Dispose();
            return ValueTask.CompletedTask;
        }
    }

    /// <summary>Writes the metadata CD afresh on every run, so it always carries this run's data.</summary>
    private static async Task<string> WriteMetadataAsync(MetadataSource metadata, Guid uuid, StateDirectory state, CancellationToken cancellation)
    {
        var path = state.Layout.MetadataIso;
        var existed = File.Exists(path);
        await metadata.WriteIsoAsync(path, uuid, cancellation);
        return existed ? path : state.TrackCreated(path);
    }
}
