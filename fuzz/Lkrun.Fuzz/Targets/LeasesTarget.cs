using System.Net;
using System.Text;
using System.Text.Json;
using Lkrun.Services.Network.Leases;

namespace Lkrun.Fuzz.Targets;

/// <summary>
/// A <c>leases.json</c> as a crash, a disk or a user may leave it, read by lkrun looking for an address's holder and
/// taking a lease: a damaged file is refused with <see cref="InvalidDataException"/> (which names it), a full pool
/// with <see cref="PoolExhaustedException"/>; nothing else escapes, and a lease taken is written back as JSON that
/// reads again and holds it.
/// </summary>
internal sealed class LeasesTarget : IFuzzTarget
{
    private static readonly Guid Identity = Guid.Parse("0f0e0d0c-0b0a-0908-0706-050403020100");

    private readonly string _directory = Directory.CreateTempSubdirectory("lkrun-fuzz-leases-").FullName;

    private string StateDirectory => Path.Combine(_directory, "state");

    public IEnumerable<byte[]> Seeds()
    {
        yield return Encoding.UTF8.GetBytes("""{"leases":[]}""");
        yield return Encoding.UTF8.GetBytes("""
            {
              "leases": [
                {
                  "identity": "6f1c8a56-2b0e-4a55-9a43-0d5e3c1b2a10",
                  "address": "192.168.65.3",
                  "stateDirectory": "/tmp/lkrun-fuzz-none/a-state",
                  "lastStarted": "2026-11-30T19:00:00+00:00"
                },
                {
                  "identity": "0f0e0d0c-0b0a-0908-0706-050403020100",
                  "address": "192.168.65.4",
                  "stateDirectory": "/tmp/lkrun-fuzz-none/b-state",
                  "lastStarted": "2026-11-29T08:30:00+00:00"
                }
              ]
            }
            """);
        yield return Encoding.UTF8.GetBytes("""{"leases":[{"identity":"6f1c8a56-2b0e-4a55-9a43-0d5e3c1b2a10","address":"192.168.65.250","stateDirectory":"/","lastStarted":"2026-11-30T19:00:00Z"}]}""");
    }

    public void Run(ReadOnlySpan<byte> input)
    {
        if (input.Length > 64 * 1024)
        {
            return;
        }
        var registry = new LeaseRegistry(_directory);
        var leases = Path.Combine(_directory, LeaseRegistry.LeasesFileName);
        File.WriteAllBytes(leases, input.ToArray());
        var running = Path.Combine(_directory, LeaseRegistry.RunningDirectoryName);
        if (Directory.Exists(running))
        {
            Directory.Delete(running, recursive: true);
        }
        try
        {
            registry.FindRunningHolder(IPAddress.Parse("192.168.65.3"), StateDirectory);
            using var lease = registry.Acquire(Identity, StateDirectory, fixedAddress: null);
            Check.That(lease.Address.AddressFamily == System.Net.Sockets.AddressFamily.InterNetwork, "the leased address is IPv4");
            using var written = JsonDocument.Parse(File.ReadAllBytes(leases));
            var mine = written.RootElement.GetProperty("leases").EnumerateArray()
                .Where(entry => entry.GetProperty("identity").GetGuid() == Identity).ToList();
            Check.That(mine.Count == 1 && mine[0].GetProperty("address").GetString() == lease.Address.ToString(), "the lease taken is written back once, with its address");
            Check.That(registry.FindRunningHolder(lease.Address, Path.Combine(_directory, "other")) is { } holder && holder.Identity == Identity, "the lease taken is running");
        }
        catch (InvalidDataException e)
        {
            Check.That(e.Message.Contains(leases, StringComparison.Ordinal), "a damaged registry is named");
        }
        catch (PoolExhaustedException)
        {
        }
    }
}
