using Lkrun.Services.Interop;
using Lkrun.Services.Network.Packets;
using Lkrun.Spec;

namespace Lkrun.Services.Network.Links;

/// <summary>Takes Ethernet frames, one call each. The span is valid only during the call.</summary>
public interface IFrameSink
{
    void Deliver(ReadOnlySpan<byte> frame);
}

/// <summary>
/// A point-to-point Ethernet link between lkrun and one VM's network device. The network's single thread drives
/// it: each turn it adds its descriptors to the poll set (<see cref="AddTo"/>), and after the wait it takes in the
/// guest's frames (<see cref="Serve"/>) and writes out what waits for the guest (<see cref="Flush"/>). Frames for
/// the guest (<see cref="IFrameSink.Deliver"/>) are sent, queued or dropped, as on a full or unplugged wire, never
/// waited for. Frames from the guest shorter than an Ethernet header or longer than
/// <see cref="FrameLimits.MaxFrameLength"/> are dropped by the link.
/// </summary>
internal interface IFrameLink : IFrameSink, IDisposable
{
    /// <summary>Adds this turn's descriptors; returns how long the wait may last at most (-1: no limit).</summary>
    int AddTo(PollSet poll);

    /// <summary>Serves what the wait found ready, passing each whole frame from the guest to <paramref name="fromGuest"/>.</summary>
    void Serve(PollSet poll, IFrameSink fromGuest);

    /// <summary>Sends what is queued for the guest, as far as the socket takes it.</summary>
    void Flush();

    /// <summary>Frames dropped either way: malformed, too long, from a stranger, or for a guest that is not there.</summary>
    long DroppedFrames { get; }
}

public static class FrameLimits
{
    /// <summary>
    /// The longest frame either way: the NAT network's MTU plus the Ethernet header, and a VLAN tag's 4 bytes of
    /// slack. QEMU's own limit is larger (69632), so a longer frame comes from a guest that ignores its MTU, and is
    /// dropped.
    /// </summary>
    public const int MaxFrameLength = NatSubnet.Mtu + EthernetFrame.HeaderLength + 4;
}
