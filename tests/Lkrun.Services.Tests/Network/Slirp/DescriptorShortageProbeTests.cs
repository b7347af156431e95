using System.Net;
using Lkrun.Services.Network.Links;
using Lkrun.Services.Network.Slirp;
using static Lkrun.Services.Tests.Network.TestFrames;

namespace Lkrun.Services.Tests.Network.Slirp;

public sealed class DescriptorShortageProbeTests
{
    private readonly List<byte[]> _stack = [];
    private int _checks;
    private int _reports;
    private bool _descriptorsLeft;

    private DescriptorShortageProbe Probe() => new(new Recorder(_stack), () =>
    {
        _checks++;
        return _descriptorsLeft;
    }, () => _reports++);

    private sealed class Recorder(List<byte[]> frames) : IFrameSink
    {
        public void Deliver(ReadOnlySpan<byte> frame) => frames.Add(frame.ToArray());
    }

    private static byte[] WithTcpFlags(byte[] frame, byte flags)
    {
        frame[14 + 20 + 13] = flags;
        return frame;
    }

    [Fact]
    public void A_connection_request_while_out_of_descriptors_is_reported_and_still_reaches_the_stack()
    {
        var probe = Probe();
        var syn = TcpSyn(Leased, 40000, Gateway, 8080, sequence: 1);

        probe.Deliver(syn);
        _descriptorsLeft = true;
        probe.Deliver(syn);

        Assert.Equal(2, _checks);
        Assert.Equal(1, _reports);
        Assert.Equal([syn, syn], _stack);
    }

    [Fact]
    public void Only_connection_requests_are_checked()
    {
        var probe = Probe();
        byte[][] others =
        [
            WithTcpFlags(TcpSyn(Leased, 40000, Gateway, 8080, sequence: 1), 0x12),
            WithTcpFlags(TcpSyn(Leased, 40000, Gateway, 8080, sequence: 1), 0x10),
            Udp(GuestMac, SlirpStack.GatewayMac, Leased, IPAddress.Parse("192.168.65.254"), 40000, 53, [1, 2, 3]),
            ArpRequest(Leased, Gateway),
            [1, 2, 3],
        ];

        foreach (var frame in others)
        {
            probe.Deliver(frame);
        }

        Assert.Equal(0, _checks);
        Assert.Equal(others, _stack);
    }
}
