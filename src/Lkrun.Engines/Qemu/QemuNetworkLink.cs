using Lkrun.Services.Hosting;

namespace Lkrun.Engines.Qemu;

/// <summary>
/// Which link QEMU's network device uses to reach lkrun's NAT network. The default is the one
/// <c>bench/network.sh</c> measured faster (<c>bench/results/network.txt</c>): datagrams, by a little in every
/// figure. <c>LKRUN_QEMU_NET_LINK=stream|datagram</c> picks one, so that tests and the benchmark exercise both.
/// </summary>
public static class QemuNetworkLink
{
    public const string EnvironmentVariable = "LKRUN_QEMU_NET_LINK";

    public const NetworkLink Default = NetworkLink.DatagramPaths;

    /// <summary>The link for the variable's value (unset or empty: the default); anything else is a usage error.</summary>
    public static NetworkLink Choose(string? value) => value switch
    {
        null or "" => Default,
        "stream" => NetworkLink.Stream,
        "datagram" => NetworkLink.DatagramPaths,
        _ => throw new EngineException($"{EnvironmentVariable}={value}: expected stream or datagram", exitCode: 2),
    };
}
