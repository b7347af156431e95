namespace Lkrun.Services.VhostUser;

/// <summary>
/// A virtio device served over vhost-user. The <see cref="VhostUserDispatcher"/> owns the protocol, the guest
/// memory and the rings; a backend only describes the device and moves buffers through rings it is handed. All
/// calls arrive on the event loop's thread.
/// </summary>
internal interface IVhostUserBackend
{
    /// <summary>How many virtqueues the front-end may set up (indexes 0 to QueueCount - 1).</summary>
    int QueueCount { get; }

    /// <summary>Virtio feature bits the device offers (<see cref="VirtioFeatures"/>).</summary>
    ulong Features { get; }

    /// <summary>Copies device configuration space bytes; false when the range is outside it.</summary>
    bool TryReadConfig(uint offset, Span<byte> destination);

    /// <summary>The virtio features the driver accepted (the vhost-user-only bit removed).</summary>
    void SetFeatures(ulong features);

    /// <summary>A ring is started and enabled: the backend may pop from it and publish used buffers.</summary>
    void QueueReady(int index, SplitVirtqueue queue);

    /// <summary>
    /// A ready ring is about to be stopped or disabled: the backend publishes what it completed and must not touch
    /// the queue afterwards.
    /// </summary>
    void QueueStopping(int index);

    /// <summary>The driver made buffers available on a ready ring.</summary>
    void QueueKicked(int index);

    /// <summary>The front-end went away or reset the device: forget every connection and buffer.</summary>
    void Reset();
}

/// <summary>Feature bits of virtio 1.x and the one vhost-user borrows.</summary>
internal static class VirtioFeatures
{
    public const ulong RingIndirectDescriptors = 1UL << 28;
    public const ulong RingEventIndex = 1UL << 29;

    /// <summary>vhost-user's reuse of the reserved bit 30: the backend speaks protocol feature negotiation.</summary>
    public const ulong VhostUserProtocolFeatures = 1UL << 30;

    public const ulong Version1 = 1UL << 32;
}

[Flags]
internal enum VhostUserProtocolFeatures : ulong
{
    None = 0,
    MultipleQueues = 1UL << 0,
    LogSharedMemory = 1UL << 1,
    ReplyAck = 1UL << 3,
    Config = 1UL << 9,
    ResetDevice = 1UL << 13,
}

/// <summary>Every size limit of the protocol, checked before anything is read or allocated.</summary>
internal static class VhostUserLimits
{
    /// <summary>The largest body any request we accept may have (the memory table is 8 + 8 * 32 bytes).</summary>
    public const int MaxBodySize = 4096;

    public const int MaxMemoryRegions = 8;

    public const int MaxConfigSize = 256;

    /// <summary>The split ring limit of virtio 1.x.</summary>
    public const int MaxQueueSize = 32768;

    /// <summary>How long a message that has started to arrive may take to arrive completely.</summary>
    public static readonly TimeSpan MessageTimeout = TimeSpan.FromSeconds(5);
}

/// <summary>
/// The front-end sent something malformed or out of order. The connection cannot be trusted any more and is
/// closed; the device goes back to waiting for a front-end.
/// </summary>
internal sealed class VhostUserProtocolException(string message) : Exception(message);
