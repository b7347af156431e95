namespace Lkrun.Fuzz;

/// <summary>
/// One fuzz target: a parser fed arbitrary bytes. <see cref="Run"/> returns normally when the parser accepted the
/// input or refused it with its own typed error; a broken promise (a foreign exception, a read outside the input, a
/// round trip that changes something) throws out of it, which AFL records as a crash.
/// </summary>
internal interface IFuzzTarget
{
    /// <summary>Small well-formed inputs built the way the real peer sends them, from which the fuzzer starts.</summary>
    IEnumerable<byte[]> Seeds();

    void Run(ReadOnlySpan<byte> input);
}

/// <summary>A promise the parser made and did not keep.</summary>
internal sealed class FuzzCheckException(string message) : Exception(message);

internal static class Check
{
    public static void That(bool condition, string promise)
    {
        if (!condition)
        {
            throw new FuzzCheckException(promise);
        }
    }

    /// <summary><paramref name="part"/> lies wholly inside <paramref name="whole"/> (an empty part anywhere in it or at its end).</summary>
    public static void Inside(ReadOnlySpan<byte> part, ReadOnlySpan<byte> whole, string what)
    {
        if (part.IsEmpty)
        {
            return;
        }
        That(whole.Overlaps(part, out var offset) && offset >= 0 && offset + part.Length <= whole.Length, $"{what} lies outside the input");
    }
}

/// <summary>Every target by name; <c>fuzz/run.sh</c> and the corpus replay test find them here. Each is made when asked for, since some map guest memory.</summary>
internal static class FuzzTargets
{
    private static readonly (string Name, Func<IFuzzTarget> Create)[] Factories =
    [
        ("dhcp", () => new Targets.DhcpTarget()),
        ("frames", () => new Targets.FramesTarget()),
        ("frame-stream", () => new Targets.FrameStreamTarget()),
        ("frame-datagram", () => new Targets.FrameDatagramTarget()),
        ("vhost-user", () => new Targets.VhostUserTarget()),
        ("virtqueue", () => new Targets.VirtqueueTarget()),
        ("vsock-packet", () => new Targets.VsockPacketTarget()),
        ("vsock-connection", () => new Targets.VsockConnectionTarget()),
        ("cli", () => new Targets.CliTarget()),
        ("vm-json", () => new Targets.VmJsonTarget()),
        ("leases", () => new Targets.LeasesTarget()),
        ("metadata-iso", () => new Targets.MetadataIsoTarget()),
        ("kernel", () => new Targets.KernelTarget()),
        ("vpnkit", () => new Targets.VpnkitTarget()),
        ("port-control", () => new Targets.PortControlTarget()),
    ];

    public static IEnumerable<string> Names => Factories.Select(factory => factory.Name);

    public static IFuzzTarget? Create(string name) => Factories.FirstOrDefault(factory => factory.Name == name).Create?.Invoke();
}
