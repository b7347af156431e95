namespace Lkrun.Services.Network;

/// <summary>The kinds of guest misbehaviour the NAT network reports, each once.</summary>
public enum GuestTrouble
{
    /// <summary>An Ethernet frame, or the ARP or IPv4 packet in it, whose lengths do not fit.</summary>
    MalformedFrame,

    /// <summary>An IPv4 fragment, which the network drops (<see cref="Slirp.GuestFrameKind.Fragment"/>).</summary>
    Fragment,

    /// <summary>A message to the DHCP server that does not parse as DHCP.</summary>
    MalformedDhcp,

    /// <summary>DHCP from a MAC other than the VM's interface (another interface or made-up MACs in the guest).</summary>
    UnservedDhcpClient,
}

/// <summary>
/// Reports what the guest does wrong on the network once per kind of trouble and lkrun run, then drops such frames
/// silently: a guest sending them by the thousand must neither flood lkrun's output nor slow the network's thread
/// with writes to it. What is dropped is the guest's own traffic, so the first report is all the user needs.
/// </summary>
public sealed class GuestTroubleLog(Action<string>? notice)
{
    private readonly bool[] _reported = new bool[Enum.GetValues<GuestTrouble>().Length];

    /// <summary>Reports <paramref name="detail"/> when it is the first trouble of its <paramref name="kind"/>.</summary>
    public void Report(GuestTrouble kind, string detail)
    {
        if (_reported[(int)kind])
        {
            return;
        }
        _reported[(int)kind] = true;
        notice?.Invoke($"network: {detail}; further ones are dropped without a report");
    }
}
