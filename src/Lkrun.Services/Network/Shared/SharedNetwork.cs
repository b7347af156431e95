using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using Lkrun.Services.Faults;
using Lkrun.Services.Interop;
using Lkrun.Services.Network.Dhcp;
using Lkrun.Services.Network.Leases;
using Lkrun.Services.Network.Packets;
using Lkrun.Services.Network.Shared.Ports;
using Lkrun.Services.Network.Shared.Vpnkit;
using Lkrun.Services.Network.Slirp;
using Lkrun.Spec;

namespace Lkrun.Services.Network.Shared;

/// <summary>
/// How a shared network is served: its two sockets, the lease registry its addresses come from, and, for a private
/// instance, how long it stays up without a VM.
/// </summary>
/// <param name="IdleExit">Stop once no client has been on the ethernet socket for this long; null: run until stopped.</param>
public sealed record SharedNetworkOptions(string EthernetSocket, string PortSocket, LeaseRegistry Leases, TimeSpan? IdleExit, Action<string> Log);

/// <summary>
/// A network that many VMs share: an L2 switch (<see cref="EthernetSwitch"/>) between every attached VM and the
/// gateway (<see cref="GatewayPort"/>: libslirp and lkrun's DHCP server, as on the private NAT network). VMs attach
/// on the ethernet socket with VPNKit's protocol (<see cref="VpnkitConnection"/>), each getting a MAC made from its
/// UUID and an address from the per-user lease registry (so <c>-ip</c> and stable addresses hold as on the private
/// network); ports are published on the port socket (<see cref="PortControl"/>) and removed when the link of their
/// VM closes, however the VM ended. Both sockets have mode 0600.
/// libslirp is not thread-safe, so one thread does everything, as in <see cref="NatNetwork"/>: it sleeps in poll(2)
/// on the listeners, every client, libslirp's sockets and a wake-up pipe, and in turn serves what is ready, fires
/// libslirp's timers and writes out what waits for each client. Nothing a client sends stops it: a bad frame is
/// dropped, a bad handshake or request closes that client, and each is reported once.
/// </summary>
public sealed class SharedNetwork : IAsyncDisposable, IDhcpClients
{
    /// <summary>The service's name for <see cref="FaultInjection"/>: <c>LKRUN_FAULT=shared-network=N</c>.</summary>
    public const string ServiceName = "shared-network";

    /// <summary>At most this many clients on each socket at once; more are closed as they come.</summary>
    public const int MaxClients = 256;

    /// <summary>The largest packet the service takes, as VPNKit counts it (the MTU and 50 bytes), within the u16 it travels in.</summary>
    public static readonly int MaxPacketSize = Math.Min(NatSubnet.Mtu + 50, ushort.MaxValue);

    private readonly SharedNetworkOptions _options;
    private readonly Socket _ethernetListener;
    private readonly Socket _portListener;
    private readonly EthernetSwitch _switch = new();
    private readonly List<VpnkitConnection> _vms = [];
    private readonly List<PortControlConnection> _portClients = [];
    private readonly WakePipe _wake = new();
    private readonly PollSet _poll = new();
    private readonly long? _faultDeadline = FaultInjection.DeadlineFor(ServiceName);
    private readonly TaskCompletionSource _started = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly TaskCompletionSource _completion = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private GatewayPort? _gateway;
    private ExposedPorts? _exposed;
    private long _idleSince = Environment.TickCount64;
    private int _clientNumber;
    private volatile bool _stopping;
    private int _disposed;

    private SharedNetwork(SharedNetworkOptions options, Socket ethernetListener, Socket portListener)
    {
        _options = options;
        _ethernetListener = ethernetListener;
        _portListener = portListener;
    }

    /// <summary>
    /// Completes once the service has stopped (disposed, or idle for <see cref="SharedNetworkOptions.IdleExit"/>)
    /// and its socket files are gone; faults with a <see cref="NetworkException"/> when its thread failed.
    /// </summary>
    public Task Completion => _completion.Task;

    /// <summary>
    /// Checks libslirp, listens on both sockets (a socket file still served by another process is an error, a
    /// stale one is replaced) and starts the service's thread. Nothing is left behind when it fails.
    /// </summary>
    public static SharedNetwork Start(SharedNetworkOptions options)
    {
        SlirpStack.CheckLibrary();
        var ethernet = Listen(options.EthernetSocket);
        Socket? port = null;
        try
        {
            port = Listen(options.PortSocket);
        }
        catch
        {
            ethernet.Dispose();
            File.Delete(options.EthernetSocket);
            throw;
        }
        var network = new SharedNetwork(options, ethernet, port);
        new Thread(network.Run) { IsBackground = true, Name = "shared network" }.Start();
        try
        {
            network._started.Task.GetAwaiter().GetResult();
        }
        catch
        {
            network._completion.Task.GetAwaiter().GetResult();
            network._wake.Dispose();
            throw;
        }
        return network;
    }

    /// <summary>The MAC of the interface with <paramref name="uuid"/>: the same on every attach, locally administered, unicast.</summary>
    public static MacAddress MacFor(Guid uuid)
    {
        Span<byte> hash = stackalloc byte[SHA256.HashSizeInBytes];
        SHA256.HashData(uuid.ToByteArray(bigEndian: true), hash);
        hash[0] = (byte)((hash[0] & 0xfc) | 0x02);
        return MacAddress.FromBytes(hash[..6]);
    }

    /// <summary>Stops the service: every client is closed, the leases freed, the ports closed and the socket files removed.</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }
        _stopping = true;
        _wake.Signal();
        try
        {
            await _completion.Task;
        }
        catch (NetworkException)
        {
            // Reported through Completion.
        }
        _wake.Dispose();
    }

    /// <summary>The DHCP server serves attached VMs only, each with its leased address.</summary>
    public IPAddress? AddressOf(MacAddress client) =>
        _vms.FirstOrDefault(vm => vm.State == VpnkitConnectionState.Attached && vm.Mac == client)?.Address;

    private static Socket Listen(string path)
    {
        if (File.Exists(path))
        {
            if (IsServed(path))
            {
                throw NetworkException.Host($"{path}: a network service is running there already");
            }
            File.Delete(path);
        }
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            socket.Bind(new UnixDomainSocketEndPoint(path));
            // Before listen(), so nobody can connect while the file has the umask's mode.
            File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite);
            socket.Listen(64);
            socket.Blocking = false;
            return socket;
        }
        catch (Exception e) when (e is SocketException or IOException or UnauthorizedAccessException)
        {
            socket.Dispose();
            File.Delete(path);
            throw NetworkException.Host($"cannot listen on {path}: {e.Message}");
        }
    }

    /// <summary>Whether something accepts connections on the socket at <paramref name="path"/>.</summary>
    internal static bool IsServed(string path)
    {
        using var probe = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            probe.Connect(new UnixDomainSocketEndPoint(path));
            return true;
        }
        catch (SocketException)
        {
            return false;
        }
    }

    private void Run()
    {
        Exception? failure = null;
        try
        {
            try
            {
                _gateway = GatewayPort.Connect(_switch, this);
                _exposed = new ExposedPorts(_gateway.Stack);
            }
            catch (Exception e)
            {
                _started.SetException(e);
                return;
            }
            _started.SetResult();
            _options.Log($"serving the shared network on {_options.EthernetSocket} (ethernet) and {_options.PortSocket} (ports)");
            try
            {
                Loop(_gateway.Stack);
            }
            catch (Exception e)
            {
                failure = NetworkException.Host($"the shared network stopped: {e.Message}");
            }
        }
        finally
        {
            Shutdown();
            if (failure is null)
            {
                _completion.SetResult();
            }
            else
            {
                _completion.SetException(failure);
            }
        }
    }

    private void Loop(SlirpStack stack)
    {
        while (!_stopping)
        {
            _poll.Clear();
            var wake = _poll.Add(_wake.ReadFd, LibC.POLLIN);
            var ethernet = _poll.Add((int)_ethernetListener.Handle, LibC.POLLIN);
            var ports = _poll.Add((int)_portListener.Handle, LibC.POLLIN);
            foreach (var vm in _vms)
            {
                vm.AddTo(_poll);
            }
            foreach (var client in _portClients)
            {
                client.AddTo(_poll);
            }
            var ready = _poll.Wait(Earliest(stack.AddTo(_poll), MillisecondsUntil(NextDeadline())));
            stack.Serve(waitFailed: ready < 0);
            if (ready > 0)
            {
                if (_poll.ReturnedEvents(wake) != 0)
                {
                    _wake.Drain();
                }
                if (_poll.ReturnedEvents(ethernet) != 0)
                {
                    AcceptVms();
                }
                if (_poll.ReturnedEvents(ports) != 0)
                {
                    AcceptPortClients();
                }
                for (var i = 0; i < _vms.Count; i++)
                {
                    _vms[i].Serve(_poll);
                }
                for (var i = 0; i < _portClients.Count; i++)
                {
                    _portClients[i].Serve(_poll);
                }
            }
            stack.FireDueTimers();
            var now = Environment.TickCount64;
            foreach (var vm in _vms)
            {
                vm.CheckDeadline(now);
                vm.Flush();
            }
            foreach (var client in _portClients)
            {
                client.CheckDeadline(now);
            }
            RemoveClosed();
            if (_options.IdleExit is { } idle && _vms.Count == 0 && now - _idleSince >= (long)idle.TotalMilliseconds)
            {
                _options.Log($"no VM has been attached for {idle.TotalSeconds:0.#} s; stopping");
                return;
            }
            FaultInjection.ThrowIfDue(ServiceName, _faultDeadline);
        }
        _options.Log("stopping: detaching every VM");
    }

    private void AcceptVms()
    {
        while (Accept(_ethernetListener) is { } socket)
        {
            var number = ++_clientNumber;
            if (_vms.Count >= MaxClients)
            {
                _options.Log($"client {number}: more than {MaxClients} clients on the ethernet socket; closed it");
                socket.Dispose();
                continue;
            }
            _vms.Add(new VpnkitConnection(socket, number, Attach, _switch, _options.Log));
        }
    }

    private void AcceptPortClients()
    {
        while (Accept(_portListener) is { } socket)
        {
            var number = ++_clientNumber;
            if (_portClients.Count >= MaxClients)
            {
                _options.Log($"port client {number}: more than {MaxClients} clients on the port socket; closed it");
                socket.Dispose();
                continue;
            }
            _portClients.Add(new PortControlConnection(socket, number, Handle, _options.Log));
        }
    }

    private static Socket? Accept(Socket listener)
    {
        try
        {
            var socket = listener.Accept();
            socket.Blocking = false;
            return socket;
        }
        catch (SocketException e) when (e.SocketErrorCode is SocketError.WouldBlock or SocketError.ConnectionAborted or SocketError.ConnectionReset)
        {
            return null;
        }
    }

    /// <summary>
    /// Grants a VM's command: its identity (one made up for a client that sent none), an address from the lease
    /// registry (the one it asks for when it is free and may be a guest's), its MAC, and its port on the switch.
    /// </summary>
    private VpnkitResponse Attach(VpnkitConnection vm, VpnkitCommand command)
    {
        var uuid = command.Uuid == Guid.Empty ? Guid.NewGuid() : command.Uuid;
        var preferred = command.PreferredAddress;
        if (preferred is not null && NatSubnet.WhyNotAssignable(preferred) is { } why)
        {
            return Refuse(vm, $"{preferred} cannot be a VM's address: {why}");
        }
        HeldLease lease;
        try
        {
            lease = _options.Leases.Acquire(uuid, stateDirectory: null, preferred);
        }
        catch (AddressHeldException e)
        {
            var holder = Path.IsPathRooted(e.Holder.StateDirectory) ? $"the running VM of {e.Holder.StateDirectory}" : "another running VM";
            return Refuse(vm, $"{e.Address} is in use by {holder}");
        }
        catch (IdentityRunningException)
        {
            return Refuse(vm, $"a VM with the same identity ({uuid}) is attached or running already");
        }
        catch (PoolExhaustedException e)
        {
            return Refuse(vm, e.Message);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or InvalidDataException)
        {
            return Refuse(vm, $"lease registry {_options.Leases.Directory}: {e.Message}");
        }
        var mac = MacFor(uuid);
        if (!_switch.Connect(vm, mac))
        {
            lease.Dispose();
            return Refuse(vm, $"the MAC {mac} made from {uuid} is another VM's");
        }
        vm.Granted(uuid, mac, lease.Address, lease);
        _options.Log($"{vm.Name} attached with MAC {mac}");
        return new VpnkitVif(NatSubnet.Mtu, MaxPacketSize, mac);
    }

    private VpnkitDisconnect Refuse(VpnkitConnection vm, string reason)
    {
        _options.Log($"{vm.Name} refused: {reason}");
        return new VpnkitDisconnect(reason);
    }

    private PortResponse Handle(PortRequest request)
    {
        var exposed = _exposed!;
        switch (request)
        {
            case ExposeRequest expose:
                var response = exposed.Expose(new ExposedPort(expose.Port, expose.GuestAddress), IsAttached);
                if (response.Error is null)
                {
                    _options.Log($"published {new ExposedPort(expose.Port, expose.GuestAddress)}");
                }
                return response;
            case UnexposeRequest unexpose:
                var removed = exposed.Unexpose(unexpose);
                if (removed.Error is null)
                {
                    _options.Log($"unpublished {PortControl.Name(unexpose.Protocol)} port {unexpose.HostAddress}:{unexpose.HostPort}");
                }
                return removed;
            default:
                return new PortResponse(null, [.. exposed.All]);
        }
    }

    private bool IsAttached(IPAddress address) =>
        _vms.Any(vm => vm.State == VpnkitConnectionState.Attached && address.Equals(vm.Address));

    private void RemoveClosed()
    {
        for (var i = _vms.Count - 1; i >= 0; i--)
        {
            if (_vms[i].State == VpnkitConnectionState.Closed)
            {
                Detach(_vms[i], "its link closed");
                _vms.RemoveAt(i);
                if (_vms.Count == 0)
                {
                    _idleSince = Environment.TickCount64;
                }
            }
        }
        _portClients.RemoveAll(client => client.IsClosed);
    }

    private void Detach(VpnkitConnection vm, string why)
    {
        _switch.Disconnect(vm);
        if (vm.Lease is { } lease)
        {
            foreach (var port in _exposed!.RemoveFor(vm.Address!))
            {
                _options.Log($"unpublished {port}: {vm.Name} is gone");
            }
            lease.Dispose();
            _options.Log($"{vm.Name} detached: {why}");
        }
        vm.Dispose();
    }

    private long? NextDeadline()
    {
        long? next = _faultDeadline;
        foreach (var vm in _vms)
        {
            next = Min(next, vm.Deadline);
        }
        foreach (var client in _portClients)
        {
            next = Min(next, client.Deadline);
        }
        if (_options.IdleExit is { } idle && _vms.Count == 0)
        {
            next = Min(next, _idleSince + (long)idle.TotalMilliseconds);
        }
        return next;
    }

    private static long? Min(long? a, long? b) => a is null ? b : b is null ? a : Math.Min(a.Value, b.Value);

    private static int MillisecondsUntil(long? deadline) =>
        deadline is { } due ? (int)Math.Clamp(due - Environment.TickCount64, 0, int.MaxValue) : -1;

    private static int Earliest(int a, int b) => a < 0 ? b : b < 0 ? a : Math.Min(a, b);

    /// <summary>On the service's thread, however it ends: every VM detached, libslirp released, the sockets gone.</summary>
    private void Shutdown()
    {
        // The files go first: once they are gone nobody takes this service for a live one, and a new service
        // bound at the same paths in the meantime cannot lose its files to this one.
        File.Delete(_options.EthernetSocket);
        File.Delete(_options.PortSocket);
        foreach (var vm in _vms)
        {
            Detach(vm, "the service stopped");
        }
        _vms.Clear();
        foreach (var client in _portClients)
        {
            client.Dispose();
        }
        _portClients.Clear();
        _gateway?.Dispose();
        _ethernetListener.Dispose();
        _portListener.Dispose();
    }
}
