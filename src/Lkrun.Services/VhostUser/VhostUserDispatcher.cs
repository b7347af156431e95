using System.Buffers.Binary;
using Lkrun.Services.Interop;

namespace Lkrun.Services.VhostUser;

/// <summary>
/// The back-end's half of the vhost-user protocol for one front-end connection. Each request is checked before it
/// reaches the backend: its body size, the descriptors attached to it, the protocol features it depends on, the
/// ring it names and that ring's state. Anything out of line throws <see cref="VhostUserProtocolException"/> and
/// the connection is dropped; <see cref="Reset"/> then returns everything to the state of a new connection.
/// <para>
/// QEMU's order, for reference: GET_FEATURES, GET/SET_PROTOCOL_FEATURES, GET_QUEUE_NUM, SET_OWNER, SET_VRING_CALL
/// per ring, GET_CONFIG; when the driver starts the device SET_FEATURES, SET_MEM_TABLE and per ring
/// SET_VRING_NUM, _BASE, _ADDR, _KICK, _CALL, then SET_VRING_ENABLE; when it stops, SET_VRING_ENABLE 0 and
/// GET_VRING_BASE per ring.
/// </para>
/// </summary>
internal sealed class VhostUserDispatcher : IDisposable
{
    private const VhostUserProtocolFeatures OfferedProtocolFeatures =
        VhostUserProtocolFeatures.MultipleQueues
        | VhostUserProtocolFeatures.ReplyAck
        | VhostUserProtocolFeatures.Config
        | VhostUserProtocolFeatures.ResetDevice;

    private readonly IVhostUserBackend _backend;
    private readonly Action<string>? _log;
    private readonly Vring[] _rings;
    private bool _reportedUnusableRing;
    private GuestMemory? _memory;
    private bool _owned;
    private ulong _features;
    private VhostUserProtocolFeatures _protocolFeatures;

    public VhostUserDispatcher(IVhostUserBackend backend, EventLoop loop, Action<string>? log = null)
    {
        _backend = backend;
        _log = log;
        _rings = new Vring[backend.QueueCount];
        for (var i = 0; i < _rings.Length; i++)
        {
            _rings[i] = new Vring(i, loop, OnKick);
        }
    }

    public ulong OfferedFeatures => _backend.Features | VirtioFeatures.VhostUserProtocolFeatures;

    public IReadOnlyList<Vring> Rings => _rings;

    public GuestMemory? Memory => _memory;

    /// <summary>
    /// Handles one request and returns the reply body, or null when none is due (no explicit reply and no
    /// REPLY_ACK request). Descriptors the request hands over are taken from the message.
    /// </summary>
    public byte[]? Handle(VhostUserMessage message)
    {
        var header = message.Header;
        var (reply, status) = Dispatch(message);
        if (reply is not null)
        {
            return reply;
        }

        if (header.NeedsReply && (_protocolFeatures & VhostUserProtocolFeatures.ReplyAck) != 0)
        {
            return U64(status);
        }

        return null;
    }

    private (byte[]? Reply, ulong Status) Dispatch(VhostUserMessage message)
    {
        var request = message.Header.Request;
        var body = message.Body;
        if (!TakesDescriptors(request) && message.Descriptors.Count != 0)
        {
            throw new VhostUserProtocolException($"{request} came with {message.Descriptors.Count} descriptors");
        }

        switch (request)
        {
            case VhostUserRequest.GetFeatures:
                VhostUserBody.ExpectEmpty(request, body);
                return (U64(OfferedFeatures), 0);

            case VhostUserRequest.SetFeatures:
                RequireOwner(request);
                SetFeatures(VhostUserBody.ReadU64(request, body));
                return (null, 0);

            case VhostUserRequest.GetProtocolFeatures:
                VhostUserBody.ExpectEmpty(request, body);
                return (U64((ulong)OfferedProtocolFeatures), 0);

            case VhostUserRequest.SetProtocolFeatures:
                var protocolFeatures = (VhostUserProtocolFeatures)VhostUserBody.ReadU64(request, body);
                if ((protocolFeatures & ~OfferedProtocolFeatures) != 0)
                {
                    throw new VhostUserProtocolException($"protocol features 0x{(ulong)protocolFeatures:x} were not offered");
                }

                _protocolFeatures = protocolFeatures;
                return (null, 0);

            case VhostUserRequest.GetQueueNum:
                VhostUserBody.ExpectEmpty(request, body);
                RequireProtocolFeature(request, VhostUserProtocolFeatures.MultipleQueues);
                return (U64((ulong)_rings.Length), 0);

            case VhostUserRequest.SetOwner:
                VhostUserBody.ExpectEmpty(request, body);
                _owned = true;
                return (null, 0);

            case VhostUserRequest.ResetOwner:
                VhostUserBody.ExpectEmpty(request, body);
                StopAllRings();
                return (null, 0);

            case VhostUserRequest.ResetDevice:
                VhostUserBody.ExpectEmpty(request, body);
                RequireProtocolFeature(request, VhostUserProtocolFeatures.ResetDevice);
                ResetDevice();
                return (null, 0);

            case VhostUserRequest.SetMemTable:
                RequireOwner(request);
                SetMemoryTable(MemoryRegionDescription.ParseTable(body), message);
                return (null, 0);

            case VhostUserRequest.SetVringNum:
                SetRingSize(VringState.Parse(request, body));
                return (null, 0);

            case VhostUserRequest.SetVringAddr:
                SetRingAddress(VringAddress.Parse(body));
                return (null, 0);

            case VhostUserRequest.SetVringBase:
                SetRingBase(VringState.Parse(request, body));
                return (null, 0);

            case VhostUserRequest.GetVringBase:
                return (GetRingBase(VringState.Parse(request, body)), 0);

            case VhostUserRequest.SetVringKick:
            case VhostUserRequest.SetVringCall:
            case VhostUserRequest.SetVringErr:
                SetRingDescriptor(request, VringDescriptorNotice.Parse(request, body), message);
                return (null, 0);

            case VhostUserRequest.SetVringEnable:
                SetRingEnabled(VringState.Parse(request, body));
                return (null, 0);

            case VhostUserRequest.GetConfig:
                RequireProtocolFeature(request, VhostUserProtocolFeatures.Config);
                return (GetConfig(ConfigAccess.Parse(request, body)), 0);

            case VhostUserRequest.SetConfig:
                RequireProtocolFeature(request, VhostUserProtocolFeatures.Config);
                ConfigAccess.Parse(request, body);
                // The configuration space is read-only: refuse without dropping the connection.
                return (null, 1);

            default:
                throw new VhostUserProtocolException($"request {(uint)request} is not supported");
        }
    }

    /// <summary>
    /// Forgets the connection: stops the rings, tells the backend, unmaps guest memory and clears negotiated
    /// state, as for a front-end that never connected.
    /// </summary>
    public void Reset()
    {
        ResetDevice();
        _owned = false;
        _protocolFeatures = VhostUserProtocolFeatures.None;
    }

    private void ResetDevice()
    {
        StopAllRings();
        foreach (var ring in _rings)
        {
            ring.Dispose();
            ring.Size = 0;
            ring.Address = null;
            ring.Base = 0;
            ring.Enabled = false;
        }

        _backend.Reset();
        _memory?.Dispose();
        _memory = null;
        _features = 0;
    }

    private static bool TakesDescriptors(VhostUserRequest request) => request
        is VhostUserRequest.SetMemTable
        or VhostUserRequest.SetVringKick
        or VhostUserRequest.SetVringCall
        or VhostUserRequest.SetVringErr;

    private void RequireOwner(VhostUserRequest request)
    {
        if (!_owned)
        {
            throw new VhostUserProtocolException($"{request} before SET_OWNER");
        }
    }

    private void RequireProtocolFeature(VhostUserRequest request, VhostUserProtocolFeatures feature)
    {
        if ((_protocolFeatures & feature) == 0)
        {
            throw new VhostUserProtocolException($"{request} without protocol feature {feature}");
        }
    }

    private Vring Ring(VhostUserRequest request, uint index)
    {
        RequireOwner(request);
        if (index >= _rings.Length)
        {
            throw new VhostUserProtocolException($"{request} for ring {index}, the device has {_rings.Length}");
        }

        return _rings[index];
    }

    private void SetFeatures(ulong features)
    {
        if ((features & ~OfferedFeatures) != 0)
        {
            throw new VhostUserProtocolException($"features 0x{features:x} include some never offered (0x{OfferedFeatures:x})");
        }

        if (features != _features && _rings.Any(ring => ring.IsStarted))
        {
            throw new VhostUserProtocolException("features changed while rings run");
        }

        _features = features;
        _backend.SetFeatures(features & ~VirtioFeatures.VhostUserProtocolFeatures);
    }

    private void SetMemoryTable(MemoryRegionDescription[] regions, VhostUserMessage message)
    {
        if (message.Descriptors.Count != regions.Length)
        {
            throw new VhostUserProtocolException($"SetMemTable with {regions.Length} regions came with {message.Descriptors.Count} descriptors");
        }

        GuestMemory memory;
        var descriptors = message.TakeDescriptors();
        try
        {
            memory = GuestMemory.Map(regions, descriptors);
        }
        catch (GuestMemoryException e)
        {
            throw new VhostUserProtocolException($"SetMemTable: {e.Message}");
        }
        catch (SystemCallException e)
        {
            throw new VhostUserProtocolException($"SetMemTable: {e.Message}");
        }
        finally
        {
            foreach (var descriptor in descriptors)
            {
                descriptor.Dispose();
            }
        }

        try
        {
            // Every ring is checked before any moves, so a refused table leaves them all on the old memory.
            foreach (var ring in _rings)
            {
                ring.Queue?.CheckFits(memory, ring.Layout);
            }
        }
        catch (VirtqueueException e)
        {
            memory.Dispose();
            throw new VhostUserProtocolException($"SetMemTable: a running ring no longer fits: {e.Message}");
        }

        foreach (var ring in _rings)
        {
            ring.Queue?.Rebind(memory, ring.Layout);
        }

        _memory?.Dispose();
        _memory = memory;
    }

    private void SetRingSize(VringState state)
    {
        var ring = Ring(VhostUserRequest.SetVringNum, state.Index);
        RequireStopped(VhostUserRequest.SetVringNum, ring);
        // Any size the guest wrote reaches here (QEMU checks only the upper bound): one the ring cannot have leaves
        // it stopped when it starts, which is the guest's loss alone.
        if (state.Number == 0 || state.Number > VhostUserLimits.MaxQueueSize)
        {
            throw new VhostUserProtocolException($"ring {state.Index} size {state.Number} is not between 1 and {VhostUserLimits.MaxQueueSize}");
        }

        ring.Size = (ushort)state.Number;
    }

    private void SetRingAddress(VringAddress address)
    {
        var ring = Ring(VhostUserRequest.SetVringAddr, address.Index);
        ring.Address = address;
        if (ring.Queue is { } queue)
        {
            Rebind(queue, ring);
        }
    }

    private void SetRingBase(VringState state)
    {
        var ring = Ring(VhostUserRequest.SetVringBase, state.Index);
        RequireStopped(VhostUserRequest.SetVringBase, ring);
        if (state.Number > ushort.MaxValue)
        {
            throw new VhostUserProtocolException($"ring {state.Index} base {state.Number} is beyond a split ring's index");
        }

        ring.Base = (ushort)state.Number;
    }

    private byte[] GetRingBase(VringState state)
    {
        var ring = Ring(VhostUserRequest.GetVringBase, state.Index);
        StopRing(ring);
        var reply = new byte[VringState.Length];
        new VringState(state.Index, ring.Base).Write(reply);
        return reply;
    }

    private void SetRingDescriptor(VhostUserRequest request, VringDescriptorNotice notice, VhostUserMessage message)
    {
        var ring = Ring(request, notice.Index);
        var expected = notice.HasDescriptor ? 1 : 0;
        if (message.Descriptors.Count != expected)
        {
            throw new VhostUserProtocolException($"{request} for ring {notice.Index} came with {message.Descriptors.Count} descriptors, expected {expected}");
        }

        var descriptor = notice.HasDescriptor ? message.TakeDescriptors()[0] : null;
        switch (request)
        {
            case VhostUserRequest.SetVringKick:
                if (descriptor is null)
                {
                    throw new VhostUserProtocolException($"ring {notice.Index}: polling instead of a kick descriptor is not supported");
                }

                ring.ReplaceKick(descriptor);
                if (!ring.IsStarted)
                {
                    StartRing(ring);
                }

                break;

            case VhostUserRequest.SetVringCall:
                ring.ReplaceCall(descriptor);
                break;

            default:
                ring.ReplaceError(descriptor);
                break;
        }
    }

    private void StartRing(Vring ring)
    {
        if (_memory is null)
        {
            throw new VhostUserProtocolException($"ring {ring.Index} started before SET_MEM_TABLE");
        }

        if (ring.Size == 0)
        {
            throw new VhostUserProtocolException($"ring {ring.Index} started before SET_VRING_NUM");
        }

        SplitVirtqueue queue;
        try
        {
            queue = new SplitVirtqueue(_memory, ring.Layout, _features, ring.Base);
        }
        catch (VirtqueueException e) when (e.Error == VirtqueueError.UnusableLayout)
        {
            // The guest's driver set the ring up wrong. Dropping the connection would end the device for the rest
            // of the VM's life (QEMU does not reconnect); a ring that never starts fails only this driver, and the
            // next reset starts afresh.
            if (!_reportedUnusableRing)
            {
                _reportedUnusableRing = true;
                _log?.Invoke($"ring {ring.Index}: {e.Message}; the ring stays stopped until the guest resets the device (not reported again)");
            }

            return;
        }
        catch (VirtqueueException e)
        {
            throw new VhostUserProtocolException($"ring {ring.Index}: {e.Message}");
        }

        // Without VHOST_USER_F_PROTOCOL_FEATURES a ring is enabled as soon as it starts.
        if ((_features & VirtioFeatures.VhostUserProtocolFeatures) == 0)
        {
            ring.Enabled = true;
        }

        ring.Start(queue);
        if (ring.IsReady)
        {
            _backend.QueueReady(ring.Index, queue);
        }
    }

    private void SetRingEnabled(VringState state)
    {
        var ring = Ring(VhostUserRequest.SetVringEnable, state.Index);
        // The spec allows SET_VRING_ENABLE once VHOST_USER_F_PROTOCOL_FEATURES is acked in SET_FEATURES.
        if ((_features & VirtioFeatures.VhostUserProtocolFeatures) == 0)
        {
            throw new VhostUserProtocolException("SetVringEnable before protocol features were negotiated");
        }

        if (state.Number > 1)
        {
            throw new VhostUserProtocolException($"SetVringEnable {state.Number} for ring {state.Index}");
        }

        var wasReady = ring.IsReady;
        if (wasReady && state.Number == 0)
        {
            _backend.QueueStopping(ring.Index);
        }

        ring.Enabled = state.Number == 1;
        if (!wasReady && ring.IsReady)
        {
            _backend.QueueReady(ring.Index, ring.Queue!);
        }
    }

    private byte[] GetConfig(ConfigAccess access)
    {
        var reply = new byte[ConfigAccess.HeaderLength + access.Size];
        if (!_backend.TryReadConfig(access.Offset, reply.AsSpan(ConfigAccess.HeaderLength)))
        {
            // An empty reply is the protocol's way of saying the read failed.
            return [];
        }

        access.WriteHeader(reply, access.Size);
        return reply;
    }

    private void Rebind(SplitVirtqueue queue, Vring ring)
    {
        try
        {
            queue.Rebind(_memory!, ring.Layout);
        }
        catch (VirtqueueException e)
        {
            throw new VhostUserProtocolException($"ring {ring.Index}: {e.Message}");
        }
    }

    private static void RequireStopped(VhostUserRequest request, Vring ring)
    {
        if (ring.IsStarted)
        {
            throw new VhostUserProtocolException($"{request} while ring {ring.Index} runs");
        }
    }

    private void StopAllRings()
    {
        foreach (var ring in _rings)
        {
            StopRing(ring);
        }
    }

    /// <summary>Stops a ring, telling the backend first when it had been handed the queue.</summary>
    private void StopRing(Vring ring)
    {
        if (ring.IsReady)
        {
            _backend.QueueStopping(ring.Index);
        }

        ring.Stop();
    }

    private void OnKick(Vring ring)
    {
        if (ring.IsReady)
        {
            _backend.QueueKicked(ring.Index);
        }
    }

    private static byte[] U64(ulong value)
    {
        var bytes = new byte[sizeof(ulong)];
        BinaryPrimitives.WriteUInt64LittleEndian(bytes, value);
        return bytes;
    }

    public void Dispose() => Reset();
}
