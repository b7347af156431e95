using System.Net.Sockets;
using Lkrun.Services.Interop;

namespace Lkrun.Services.Network.Links;

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
    /// <summary>
    /// A new pair, both ends close-on-exec and with the datagram link's socket buffers (1 MiB send, 4 MiB receive,
    /// as far as the system grants them): one end for the network, one for the device.
    /// </summary>
    public static (SafeSocketHandle Network, SafeSocketHandle Device) Create() =>
        UnixDatagram.Pair(DatagramFrameLink.RequestedSendBuffer, DatagramFrameLink.RequestedReceiveBuffer);
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
