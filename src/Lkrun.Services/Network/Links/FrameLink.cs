using System.Net.Sockets;
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

/// <summary>How the network device's frames travel between the engine and lkrun.</summary>
public enum NetworkLinkKind
{
    /// <summary>A unix stream socket, each frame preceded by its length (QEMU's <c>-netdev stream</c>).</summary>
    Stream,

    /// <summary>Unix datagram sockets, one frame per datagram (QEMU's <c>-netdev dgram</c>, Virtualization.framework).</summary>
    Datagram,
}

/// <summary>Where the network device's link ends on lkrun's side: which kind, and its socket.</summary>
public abstract record FrameLinkEndpoint;

/// <summary>lkrun listens on <paramref name="Path"/>, and the engine connects (QEMU's <c>-netdev stream</c>).</summary>
public sealed record StreamLinkEndpoint(string Path) : FrameLinkEndpoint;

/// <summary>
/// lkrun binds <paramref name="Path"/> and the engine binds <paramref name="DevicePath"/> (QEMU's <c>-netdev dgram</c>
/// with unix addresses). lkrun takes datagrams only from <paramref name="DevicePath"/>, and connects to it when the
/// first one arrives.
/// </summary>
public sealed record DatagramPathsEndpoint(string Path, string DevicePath) : FrameLinkEndpoint;

/// <summary>
/// A connected datagram socket, one end of a pair whose other end the engine hands to the device
/// (Virtualization.framework's <c>VZFileHandleNetworkDeviceAttachment</c>). The network owns it once started.
/// </summary>
public sealed record DatagramSocketEndpoint(SafeSocketHandle Socket) : FrameLinkEndpoint;

/// <summary>The two ends of a connected pair of unix datagram sockets, for a <see cref="DatagramSocketEndpoint"/>.</summary>
public static class DatagramSocketPair
{
    /// <summary>A new pair, both ends close-on-exec: one for the network, one for the device.</summary>
    public static (SafeSocketHandle Network, SafeSocketHandle Device) Create() => UnixDatagram.Pair();
}

internal static class FrameLinks
{
    /// <summary>Opens lkrun's end of the link; creates its socket file, if it has one.</summary>
    public static IFrameLink Open(FrameLinkEndpoint endpoint) => endpoint switch
    {
        StreamLinkEndpoint stream => StreamFrameLink.Listen(stream.Path),
        DatagramPathsEndpoint paths => DatagramFrameLink.Bind(paths.Path, paths.DevicePath),
        DatagramSocketEndpoint socket => DatagramFrameLink.Adopt(socket.Socket),
        _ => throw new ArgumentException($"no frame link for {endpoint}", nameof(endpoint)),
    };
}
