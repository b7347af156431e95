using Lkrun.Services.Network.Links;

namespace Lkrun.Services.Network.Slirp;

/// <summary>
/// The first stop of every frame from the guest (<see cref="GuestFrames"/>): a well-formed frame goes on to
/// <paramref name="next"/>, any other is dropped, and the first malformed one and the first IPv4 fragment are
/// reported (<see cref="GuestTroubleLog"/>).
/// Frames of a type the network does not carry are dropped without a report: a guest with IPv6 sends them as a matter of course.
/// </summary>
public sealed class GuestFrameCheck(GuestTroubleLog trouble, IFrameSink next) : IFrameSink
{
    /// <summary>Frames dropped as malformed, for tests and diagnostics.</summary>
    public long MalformedFrames { get; private set; }

    public void Deliver(ReadOnlySpan<byte> frame)
    {
        switch (GuestFrames.Classify(frame, out var problem))
        {
            case GuestFrameKind.WellFormed:
                next.Deliver(frame);
                break;
            case GuestFrameKind.Fragment:
                trouble.Report(GuestTrouble.Fragment,
                    "the guest sent an IPv4 fragment; the NAT network drops fragmented datagrams (libslirp cannot reassemble them safely)");
                break;
            case GuestFrameKind.Malformed:
                MalformedFrames++;
                trouble.Report(GuestTrouble.MalformedFrame, $"the guest sent {problem}, which lkrun drops");
                break;
        }
    }
}
