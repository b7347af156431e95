using Lkrun.Services.Network.Packets;
using Lkrun.Services.Network.Shared;
using static Lkrun.Services.Tests.Network.TestFrames;

namespace Lkrun.Services.Tests.Network.Shared;

public sealed class EthernetSwitchTests
{
    private static readonly MacAddress A = MacAddress.FromBytes([0x02, 0, 0, 0, 0, 0x0a]);
    private static readonly MacAddress B = MacAddress.FromBytes([0x02, 0, 0, 0, 0, 0x0b]);
    private static readonly MacAddress C = MacAddress.FromBytes([0x02, 0, 0, 0, 0, 0x0c]);
    private static readonly MacAddress Gateway = MacAddress.FromBytes([0x52, 0x55, 192, 168, 65, 1]);
    private static readonly MacAddress Multicast = MacAddress.FromBytes([0x01, 0x00, 0x5e, 0, 0, 1]);

    private long _now = 1_000;
    private readonly EthernetSwitch _switch;
    private readonly Port _vm1 = new("vm1", takesUnknownUnicast: true);
    private readonly Port _vm2 = new("vm2", takesUnknownUnicast: true);
    private readonly Port _vm3 = new("vm3", takesUnknownUnicast: true);
    private readonly Port _gateway = new("gateway", takesUnknownUnicast: false);

    public EthernetSwitchTests()
    {
        _switch = new EthernetSwitch(() => _now);
        Assert.True(_switch.Connect(_gateway, Gateway));
        Assert.True(_switch.Connect(_vm1, A));
        Assert.True(_switch.Connect(_vm2, B));
        Assert.True(_switch.Connect(_vm3));
    }

    private static byte[] Frame(MacAddress from, MacAddress to, byte tag = 0) => Ethernet(from, to, 0x0800, [tag, 1, 2, 3]);

    private void AssertReceived(Port port, params byte[][] frames) => Assert.Equal(frames, port.Received);

    private void Clear()
    {
        foreach (var port in new[] { _vm1, _vm2, _vm3, _gateway })
        {
            port.Received.Clear();
        }
    }

    [Fact]
    public void Broadcast_and_multicast_reach_every_port_but_the_one_they_came_from()
    {
        var broadcast = Frame(A, MacAddress.Broadcast);
        var multicast = Frame(A, Multicast);
        _switch.Forward(_vm1, broadcast);
        _switch.Forward(_vm1, multicast);
        AssertReceived(_vm1);
        AssertReceived(_vm2, broadcast, multicast);
        AssertReceived(_vm3, broadcast, multicast);
        AssertReceived(_gateway, broadcast, multicast);
    }

    [Fact]
    public void Unicast_to_a_ports_own_mac_goes_to_that_port_only()
    {
        var toB = Frame(A, B);
        var toGateway = Frame(A, Gateway);
        _switch.Forward(_vm1, toB);
        _switch.Forward(_vm1, toGateway);
        AssertReceived(_vm2, toB);
        AssertReceived(_gateway, toGateway);
        AssertReceived(_vm3);
        AssertReceived(_vm1);
    }

    [Fact]
    public void Unknown_unicast_floods_to_the_vms_but_not_to_the_gateway_and_learning_then_narrows_it()
    {
        var toC = Frame(A, C, 1);
        _switch.Forward(_vm1, toC);
        AssertReceived(_vm2, toC);
        AssertReceived(_vm3, toC);
        AssertReceived(_gateway);
        Clear();

        // C speaks from behind vm3: from now on frames for C go there alone.
        _switch.Forward(_vm3, Frame(C, MacAddress.Broadcast));
        Clear();
        var again = Frame(A, C, 2);
        _switch.Forward(_vm1, again);
        AssertReceived(_vm3, again);
        AssertReceived(_vm2);
        Assert.Same(_vm3, _switch.PortOf(C));
    }

    [Fact]
    public void A_station_that_moves_is_found_on_its_new_port()
    {
        _switch.Forward(_vm3, Frame(C, A));
        _switch.Forward(_vm2, Frame(C, A));
        Clear();
        var toC = Frame(A, C);
        _switch.Forward(_vm1, toC);
        AssertReceived(_vm2, toC);
        AssertReceived(_vm3);
    }

    [Fact]
    public void A_ports_own_mac_cannot_be_taken_over_by_sending_from_it()
    {
        _switch.Forward(_vm3, Frame(A, MacAddress.Broadcast));
        _switch.Forward(_vm3, Frame(Gateway, MacAddress.Broadcast));
        Clear();
        var toA = Frame(B, A);
        var toGateway = Frame(B, Gateway);
        _switch.Forward(_vm2, toA);
        _switch.Forward(_vm2, toGateway);
        AssertReceived(_vm1, toA);
        AssertReceived(_gateway, toGateway);
        AssertReceived(_vm3);
        Assert.False(_switch.Connect(_vm3, A));
    }

    [Fact]
    public void Learned_stations_age_out_after_the_ageing_time_without_a_frame()
    {
        _switch.Forward(_vm3, Frame(C, A));
        _now += (long)EthernetSwitch.AgeingTime.TotalMilliseconds - 1;
        Assert.Same(_vm3, _switch.PortOf(C));
        _switch.Forward(_vm3, Frame(C, A));
        _now += (long)EthernetSwitch.AgeingTime.TotalMilliseconds - 1;
        Assert.Same(_vm3, _switch.PortOf(C));
        _now += 1;
        Assert.Null(_switch.PortOf(C));
        Clear();
        var toC = Frame(A, C);
        _switch.Forward(_vm1, toC);
        AssertReceived(_vm2, toC);
        AssertReceived(_vm3, toC);
        // A port's own MACs never age.
        _now += 10 * (long)EthernetSwitch.AgeingTime.TotalMilliseconds;
        Assert.Same(_vm1, _switch.PortOf(A));
    }

    [Fact]
    public void A_port_that_leaves_takes_its_own_and_its_learned_stations_with_it()
    {
        _switch.Forward(_vm2, Frame(C, A));
        _switch.Disconnect(_vm2);
        Assert.Null(_switch.PortOf(B));
        Assert.Null(_switch.PortOf(C));
        Assert.DoesNotContain(_vm2, _switch.Ports);
        Clear();
        _switch.Forward(_vm1, Frame(A, MacAddress.Broadcast));
        AssertReceived(_vm2);
        // Its MAC is free for a port that comes later.
        Assert.True(_switch.Connect(_vm3, B));
    }

    [Fact]
    public void Frames_from_a_multicast_source_and_frames_for_their_own_port_are_dropped()
    {
        _switch.Forward(_vm3, Frame(Multicast, MacAddress.Broadcast));
        _switch.Forward(_vm1, Frame(C, A));
        _switch.Forward(_vm1, new byte[10]);
        AssertReceived(_vm1);
        AssertReceived(_vm2);
        AssertReceived(_vm3);
        AssertReceived(_gateway);
        Assert.Equal(3, _switch.DroppedFrames);
        Assert.Null(_switch.PortOf(Multicast));
    }

    private sealed class Port(string name, bool takesUnknownUnicast) : ISwitchPort
    {
        public List<byte[]> Received { get; } = [];

        public bool TakesUnknownUnicast => takesUnknownUnicast;

        public void Deliver(ReadOnlySpan<byte> frame) => Received.Add(frame.ToArray());

        public override string ToString() => name;
    }
}
