using Lkrun.Services.Network.Links;

namespace Lkrun.Services.Tests.Network;

/// <summary>A frame sink that drops what it is given: for a stack whose guest side a test does not look at.</summary>
internal sealed class Nowhere : IFrameSink
{
    public void Deliver(ReadOnlySpan<byte> frame)
    {
    }
}
