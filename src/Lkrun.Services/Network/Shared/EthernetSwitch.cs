using Lkrun.Services.Network.Links;
using Lkrun.Services.Network.Packets;

namespace Lkrun.Services.Network.Shared;

/// <summary>One port of the <see cref="EthernetSwitch"/>: where the frames for the stations behind it go.</summary>
public interface ISwitchPort : IFrameSink
{
    /// <summary>
    /// Whether unicast frames for stations the switch does not know are flooded to this port. A VM's port takes
    /// them (a station behind it may not have spoken yet); the gateway's does not, since libslirp would answer a
    /// frame for another guest's address as though it were for the world outside.
    /// </summary>
    bool TakesUnknownUnicast { get; }
}

/// <summary>
/// The shared network's L2 switch, a learning bridge as IEEE 802.1D describes one: broadcast and multicast frames
/// go to every port but the one they came in on; a unicast frame goes only to the port its destination was last
/// seen behind, or, for a destination not seen yet, to every port that takes unknown unicast. Each port's own MACs
/// (a VM's interface, the gateway's addresses) are fixed entries that no other port can take over by sending from
/// them; any other source MAC is learned on the port it came from and forgotten after <see cref="AgeingTime"/>
/// without a frame from it, or when its port goes. Frames from a multicast source, which no station may send,
/// are dropped. Used by one thread; time comes from the clock given, in milliseconds.
/// </summary>
public sealed class EthernetSwitch(Func<long> clock)
{
    /// <summary>How long a learned station stays known without sending: 802.1D's default.</summary>
    public static readonly TimeSpan AgeingTime = TimeSpan.FromSeconds(300);

    private readonly List<ISwitchPort> _ports = [];
    private readonly Dictionary<MacAddress, Station> _stations = [];

    public EthernetSwitch()
        : this(() => Environment.TickCount64)
    {
    }

    public IReadOnlyList<ISwitchPort> Ports => _ports;

    /// <summary>Frames dropped: from a multicast source, too short, or for a station behind the port they came from.</summary>
    public long DroppedFrames { get; private set; }

    /// <summary>
    /// Plugs <paramref name="port"/> in with the MACs it owns. False, and nothing changes, when another port owns
    /// one of them already.
    /// </summary>
    public bool Connect(ISwitchPort port, params IReadOnlyList<MacAddress> owned)
    {
        if (owned.Any(mac => mac.IsMulticast || _stations.TryGetValue(mac, out var station) && station.Fixed && station.Port != port))
        {
            return false;
        }
        if (!_ports.Contains(port))
        {
            _ports.Add(port);
        }
        foreach (var mac in owned)
        {
            _stations[mac] = new Station(port, Fixed: true, LastSeen: 0);
        }
        return true;
    }

    /// <summary>Unplugs <paramref name="port"/>: its own MACs and the stations learned behind it are forgotten.</summary>
    public void Disconnect(ISwitchPort port)
    {
        _ports.Remove(port);
        foreach (var mac in _stations.Where(entry => entry.Value.Port == port).Select(entry => entry.Key).ToList())
        {
            _stations.Remove(mac);
        }
    }

    /// <summary>The port <paramref name="mac"/> is behind, or null when it is unknown or has aged out.</summary>
    public ISwitchPort? PortOf(MacAddress mac) => Lookup(mac, Now)?.Port;

    /// <summary>Takes a frame that came in on <paramref name="from"/> and sends it where it goes.</summary>
    public void Forward(ISwitchPort from, ReadOnlySpan<byte> frame)
    {
        if (!EthernetFrame.TryParse(frame, out var ethernet) || ethernet.Source.IsMulticast)
        {
            DroppedFrames++;
            return;
        }
        var now = Now;
        Learn(ethernet.Source, from, now);
        var destination = ethernet.Destination;
        if (destination.IsMulticast)
        {
            Flood(from, frame, unknownUnicast: false);
            return;
        }
        if (Lookup(destination, now) is { } station)
        {
            if (station.Port == from)
            {
                DroppedFrames++;
                return;
            }
            station.Port.Deliver(frame);
            return;
        }
        Flood(from, frame, unknownUnicast: true);
    }

    private long Now => clock();

    private void Learn(MacAddress source, ISwitchPort from, long now)
    {
        if (_stations.TryGetValue(source, out var known) && known.Fixed)
        {
            return;
        }
        _stations[source] = new Station(from, Fixed: false, now);
    }

    private Station? Lookup(MacAddress mac, long now)
    {
        if (!_stations.TryGetValue(mac, out var station))
        {
            return null;
        }
        if (!station.Fixed && now - station.LastSeen >= (long)AgeingTime.TotalMilliseconds)
        {
            _stations.Remove(mac);
            return null;
        }
        return station;
    }

    private void Flood(ISwitchPort from, ReadOnlySpan<byte> frame, bool unknownUnicast)
    {
        // Ports queue what they are given and leave the switch only between frames, so the list holds still.
        for (var i = 0; i < _ports.Count; i++)
        {
            var port = _ports[i];
            if (port != from && (!unknownUnicast || port.TakesUnknownUnicast))
            {
                port.Deliver(frame);
            }
        }
    }

    private sealed record Station(ISwitchPort Port, bool Fixed, long LastSeen);
}
