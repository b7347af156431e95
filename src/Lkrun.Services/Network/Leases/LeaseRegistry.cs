using System.Diagnostics;
using System.Net;
using System.Text.Json;
using System.Text.Json.Serialization;
using Microsoft.Win32.SafeHandles;
using Lkrun.Services.Interop;
using Lkrun.Services.State;

namespace Lkrun.Services.Network.Leases;

/// <summary>
/// The per-user record of which VM has which address on the NAT network, in <c>$XDG_STATE_HOME/lkrun</c> (or
/// <c>~/.local/state/lkrun</c>):
/// <list type="bullet">
/// <item><c>leases.json</c>: the leases, rewritten whole (write then rename) on every change;</item>
/// <item><c>leases.lock</c>: an flock held while the leases are read and changed, so lkruns starting together
/// never pick the same address;</item>
/// <item><c>running/UUID.lock</c>: an flock each running lkrun holds for as long as its VM runs. The kernel drops
/// it when lkrun dies however it dies, so "running" never outlives the process, and pid reuse cannot fool it.
/// Running locks are taken and tested only under <c>leases.lock</c>, so a test never races a take.</item>
/// <item><c>running/UUID.json</c>: each VM's own lease, written beside its lock when it starts, so that a damaged
/// <c>leases.json</c> is rebuilt from them without losing any VM's address.</item>
/// </list>
/// </summary>
public sealed class LeaseRegistry(string directory)
{
    public const string LeasesFileName = "leases.json";
    public const string LockFileName = "leases.lock";
    public const string RunningDirectoryName = "running";

    /// <summary>Holders keep the registry lock for milliseconds; waiting longer means something is stuck.</summary>
    public static readonly TimeSpan LockTimeout = TimeSpan.FromSeconds(10);

    private static readonly TimeSpan LockRetryInterval = TimeSpan.FromMilliseconds(20);

    public string Directory { get; } = directory;

    /// <summary>Set when a damaged <c>leases.json</c> was rebuilt: one line saying so, for the user.</summary>
    public string? Repaired { get; private set; }

    /// <summary>The registry of the user running lkrun, following the XDG base directory rules.</summary>
    public static LeaseRegistry ForCurrentUser() =>
        ForHome(Environment.GetEnvironmentVariable("XDG_STATE_HOME"), Environment.GetFolderPath(Environment.SpecialFolder.UserProfile));

    /// <summary><c>$XDG_STATE_HOME/lkrun</c>; <c>~/.local/state/lkrun</c> when it is unset or relative, which XDG says to ignore.</summary>
    public static LeaseRegistry ForHome(string? stateHome, string home) =>
        new(string.IsNullOrEmpty(stateHome) || !Path.IsPathRooted(stateHome)
            ? Path.Combine(home, ".local", "state", "lkrun")
            : Path.Combine(stateHome, "lkrun"));

    /// <summary>
    /// The running VM, other than the one of <paramref name="stateDirectory"/>, that holds <paramref name="address"/>;
    /// null when none does. Changes nothing and creates nothing when the registry does not exist yet.
    /// </summary>
    public Lease? FindRunningHolder(IPAddress address, string stateDirectory)
    {
        if (!File.Exists(Path.Combine(Directory, LeasesFileName)))
        {
            return null;
        }
        using var _ = LockRegistry();
        var leases = ReadLeases(repair: false);
        var mine = leases.FirstOrDefault(lease => lease.StateDirectory == stateDirectory)?.Identity ?? Guid.Empty;
        return LeaseTable.RunningHolder(leases, StatusOf, address, mine);
    }

    /// <summary>
    /// Leases an address to <paramref name="identity"/> and marks it running until the returned lease is disposed.
    /// Throws <see cref="AddressHeldException"/>, <see cref="PoolExhaustedException"/>, or
    /// <see cref="IdentityRunningException"/> when a copy of the same state dir is running elsewhere (or, on a
    /// shared network, the same VM is attached already). A null <paramref name="stateDirectory"/> keeps the one the
    /// lease records: the shared network's service leases by identity alone, and the VM's lkrun records its state
    /// dir (<see cref="RecordStateDirectory"/>).
    /// </summary>
    public HeldLease Acquire(Guid identity, string? stateDirectory, IPAddress? fixedAddress)
    {
        System.IO.Directory.CreateDirectory(Directory, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        System.IO.Directory.CreateDirectory(Path.Combine(Directory, RunningDirectoryName), UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        using var _ = LockRegistry();
        var leases = ReadLeases(repair: true);
        var running = TakeRunningLock(identity, leases);
        try
        {
            var assignment = LeaseTable.Assign(leases, StatusOf, identity, stateDirectory, fixedAddress, DateTimeOffset.UtcNow);
            WriteLeases(assignment.Leases);
            WriteAtomically(RecordPath(identity), JsonSerializer.Serialize(
                assignment.Leases.First(lease => lease.Identity == identity), LeaseFileJson.Default.Lease));
            foreach (var dropped in leases.Where(old => assignment.Leases.All(kept => kept.Identity != old.Identity)))
            {
                File.Delete(RunningLockPath(dropped.Identity));
                File.Delete(RecordPath(dropped.Identity));
            }
            return new HeldLease(assignment.Address, running);
        }
        catch
        {
            running.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Records <paramref name="stateDirectory"/> as the home of <paramref name="identity"/>'s lease, so that the
    /// address stays kept for it while the state dir exists. Changes nothing when the identity has no lease (its
    /// network is not one of lkrun's) or the registry does not exist.
    /// </summary>
    public void RecordStateDirectory(Guid identity, string stateDirectory)
    {
        if (!File.Exists(Path.Combine(Directory, LeasesFileName)))
        {
            return;
        }
        using var _ = LockRegistry();
        var leases = ReadLeases(repair: true);
        var index = leases.FindIndex(lease => lease.Identity == identity);
        if (index >= 0 && leases[index].StateDirectory != stateDirectory)
        {
            leases[index] = leases[index] with { StateDirectory = stateDirectory };
            WriteLeases(leases);
        }
    }

    private SafeFileHandle TakeRunningLock(Guid identity, IReadOnlyList<Lease> leases)
    {
        var running = PosixFileLock.Open(RunningLockPath(identity));
        if (!PosixFileLock.TryLockExclusive(running))
        {
            running.Dispose();
            var lease = leases.FirstOrDefault(l => l.Identity == identity);
            throw new IdentityRunningException(identity, lease?.StateDirectory);
        }
        return running;
    }

    /// <summary>Must be called with the registry locked, so that no lkrun takes a running lock meanwhile.</summary>
    private LeaseStatus StatusOf(Lease lease)
    {
        var path = RunningLockPath(lease.Identity);
        if (File.Exists(path))
        {
            using var probe = PosixFileLock.Open(path);
            if (!PosixFileLock.TryLockExclusive(probe))
            {
                return LeaseStatus.Running;
            }
        }
        return StateDirectoryHolds(lease) ? LeaseStatus.Kept : LeaseStatus.Stale;
    }

    /// <summary>A lease recorded without a state dir (a shared network's client that is not an lkrun) holds nothing once stopped.</summary>
    private static bool StateDirectoryHolds(Lease lease) =>
        Path.IsPathRooted(lease.StateDirectory) && VmIdentity.TryLoad(lease.StateDirectory) == lease.Identity;

    private SafeFileHandle LockRegistry()
    {
        var path = Path.Combine(Directory, LockFileName);
        var lockFile = PosixFileLock.Open(path);
        var waited = Stopwatch.StartNew();
        while (!PosixFileLock.TryLockExclusive(lockFile))
        {
            if (waited.Elapsed > LockTimeout)
            {
                lockFile.Dispose();
                throw new IOException($"the lease registry {path} has been locked by another lkrun for more than {LockTimeout.TotalSeconds:0} s");
            }
            Thread.Sleep(LockRetryInterval);
        }
        return lockFile;
    }

    private string RunningLockPath(Guid identity) => Path.Combine(Directory, RunningDirectoryName, $"{identity}.lock");

    private string RecordPath(Guid identity) => Path.Combine(Directory, RunningDirectoryName, $"{identity}.json");

    /// <summary>
    /// The leases in <c>leases.json</c>. A damaged file is rebuilt from the VMs' own records (and, with
    /// <paramref name="repair"/>, written back and reported through <see cref="Repaired"/>).
    /// </summary>
    private List<Lease> ReadLeases(bool repair)
    {
        var path = Path.Combine(Directory, LeasesFileName);
        if (!File.Exists(path))
        {
            return [];
        }
        string damage;
        try
        {
            var leases = JsonSerializer.Deserialize(File.ReadAllText(path), LeaseFileJson.Default.LeaseFile)?.Leases ?? [];
            // The serializer's null checks stop at list entries.
            if (leases.All(lease => lease is not null))
            {
                return leases;
            }
            damage = "a null lease";
        }
        catch (JsonException e)
        {
            damage = e.Message;
        }
        var rebuilt = ReadRecords();
        if (repair)
        {
            WriteLeases(rebuilt);
            Repaired = $"the lease registry {path} was damaged ({damage}); rebuilt it with the {rebuilt.Count} leases the VMs recorded";
        }
        return rebuilt;
    }

    /// <summary>Every VM's own record of its lease; one that cannot be read is skipped (its VM gets a lease anew).</summary>
    private List<Lease> ReadRecords()
    {
        var records = new List<Lease>();
        var running = Path.Combine(Directory, RunningDirectoryName);
        foreach (var file in System.IO.Directory.Exists(running) ? System.IO.Directory.GetFiles(running, "*.json") : [])
        {
            try
            {
                if (JsonSerializer.Deserialize(File.ReadAllText(file), LeaseFileJson.Default.Lease) is { } lease
                    && records.All(other => other.Identity != lease.Identity && !other.Address.Equals(lease.Address)))
                {
                    records.Add(lease);
                }
            }
            catch (Exception e) when (e is JsonException or IOException)
            {
                // Damaged too, or removed meanwhile: that VM's next run leases an address afresh.
            }
        }
        return records;
    }

    private void WriteLeases(IReadOnlyList<Lease> leases) =>
        WriteAtomically(Path.Combine(Directory, LeasesFileName), JsonSerializer.Serialize(new LeaseFile([.. leases]), LeaseFileJson.Default.LeaseFile));

    private static void WriteAtomically(string path, string text)
    {
        var temporary = $"{path}.{Environment.ProcessId}.tmp";
        File.WriteAllText(temporary, text);
        File.Move(temporary, path, overwrite: true);
    }
}

/// <summary>An address leased to a running VM; disposing it marks the VM stopped (its address stays kept for it).</summary>
public sealed class HeldLease : IDisposable
{
    private readonly SafeFileHandle _runningLock;

    internal HeldLease(IPAddress address, SafeFileHandle runningLock)
    {
        Address = address;
        _runningLock = runningLock;
    }

    public IPAddress Address { get; }

    public void Dispose() => _runningLock.Dispose();
}

/// <summary>Another lkrun runs a VM with the same identity: a copy of this state dir, made while it ran.</summary>
public sealed class IdentityRunningException(Guid identity, string? stateDirectory)
    : Exception($"a VM with the same identity ({identity}) is running from {stateDirectory ?? "another state dir"}; a copied state dir needs a new vpnkit.uuid");

internal sealed record LeaseFile(List<Lease> Leases);

[JsonSourceGenerationOptions(
    WriteIndented = true,
    PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase,
    RespectNullableAnnotations = true,
    RespectRequiredConstructorParameters = true)]
[JsonSerializable(typeof(LeaseFile))]
[JsonSerializable(typeof(Lease))]
internal sealed partial class LeaseFileJson : JsonSerializerContext;
