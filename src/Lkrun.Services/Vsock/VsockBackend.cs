using System.Buffers.Binary;
using Lkrun.Services.VhostUser;

namespace Lkrun.Services.Vsock;

/// <summary>
/// virtio-vsock as a vhost-user backend: the device's features and configuration (the guest CID), and the wiring
/// of its receive and transmit queues to the <see cref="VsockMuxer"/>. The event queue is accepted when a
/// front-end hands it over, and left alone: the only event it carries, a transport reset after migration, never
/// happens here.
/// </summary>
internal sealed class VsockBackend(VsockMuxer muxer, ulong guestCid) : IVhostUserBackend
{
    private const int ConfigSize = sizeof(ulong);

    private readonly SplitVirtqueue?[] _queues = new SplitVirtqueue?[VsockQueues.Count];

    public int QueueCount => VsockQueues.Count;

    public ulong Features =>
        VirtioFeatures.Version1 | VirtioFeatures.RingEventIndex | VirtioFeatures.RingIndirectDescriptors;

    public bool TryReadConfig(uint offset, Span<byte> destination)
    {
        if (offset > ConfigSize || destination.Length > ConfigSize - offset)
        {
            return false;
        }

        Span<byte> config = stackalloc byte[ConfigSize];
        BinaryPrimitives.WriteUInt64LittleEndian(config, guestCid);
        config.Slice((int)offset, destination.Length).CopyTo(destination);
        return true;
    }

    public void SetFeatures(ulong features)
    {
        // Ring features reach each queue when it starts; the vsock protocol itself has none to act on.
    }

    public void QueueReady(int index, SplitVirtqueue queue)
    {
        _queues[index] = queue;
        if (_queues[VsockQueues.Receive] is { } receive && _queues[VsockQueues.Transmit] is { } transmit && !muxer.IsAttached)
        {
            muxer.Attach(receive, transmit);
        }
    }

    public void QueueStopping(int index)
    {
        if (index != VsockQueues.Event && muxer.IsAttached)
        {
            muxer.Detach();
        }

        _queues[index] = null;
    }

    public void QueueKicked(int index)
    {
        // The event loop pumps the muxer after every wake-up; the kick only had to wake it.
    }

    public void Reset()
    {
        muxer.Detach();
        Array.Clear(_queues);
    }
}
