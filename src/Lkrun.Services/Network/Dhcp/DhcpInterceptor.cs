using Lkrun.Services.Network.Links;

namespace Lkrun.Services.Network.Dhcp;

/// <summary>
/// Sits between the guest's link and the stack: frames addressed to the DHCP server (<see cref="DhcpServer.IsAddressedToServer"/>)
/// are answered here, the answer going back to the guest through <paramref name="replies"/>, and never reach the
/// stack; every other frame goes on to <paramref name="next"/> unchanged. This is how lkrun's DHCP server takes the
/// place of libslirp's.
/// </summary>
public sealed class DhcpInterceptor(DhcpServer server, IFrameSink replies, IFrameSink next) : IFrameSink
{
    public void Deliver(ReadOnlySpan<byte> frame)
    {
        if (!server.IsAddressedToServer(frame))
        {
            next.Deliver(frame);
            return;
        }
        if (server.Answer(frame) is { } reply)
        {
            replies.Deliver(reply);
        }
    }
}
