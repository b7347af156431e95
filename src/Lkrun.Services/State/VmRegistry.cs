using System.Text.Json;
using Lkrun.Services.Interop;
using Lkrun.Services.Network.Leases;
using Lkrun.Spec;

namespace Lkrun.Services.State;

/// <summary>A VM known to lkrun by name: its state dir holds everything else.</summary>
public sealed record RegisteredVm(string Name, string StateDirectory);

/// <summary>
/// The per-user list of VMs by name, beside the lease registry in <c>$XDG_STATE_HOME/lkrun</c>: <c>vms.json</c>,
/// rewritten whole (write then rename, so a reader never sees half of it) under the flock of <c>vms.lock</c>, so
/// that lkruns starting together never give out one name twice. Whether a VM runs is not recorded here: its state
/// dir's lock says that.
/// </summary>
public sealed class VmRegistry(string directory)
{
    public const string FileName = "vms.json";
    public const string LockFileName = "vms.lock";
    public const int MaxNameLength = 64;

    public string Directory { get; } = directory;

    public static VmRegistry ForCurrentUser() => new(LeaseRegistry.ForCurrentUser().Directory);

    /// <summary>Every registered VM whose state dir still exists, by name.</summary>
    public IReadOnlyList<RegisteredVm> List() => [.. Read().Where(vm => System.IO.Directory.Exists(vm.StateDirectory)).OrderBy(vm => vm.Name, StringComparer.Ordinal)];

    public RegisteredVm? FindByName(string name) => List().FirstOrDefault(vm => vm.Name == name);

    public RegisteredVm? FindByStateDirectory(string stateDirectory) => List().FirstOrDefault(vm => vm.StateDirectory == stateDirectory);

    /// <summary>Why <paramref name="name"/> cannot name a VM, or null when it can.</summary>
    public static string? WhyNotAName(string name)
    {
        if (name.Length is 0 or > MaxNameLength)
        {
            return $"must be 1 to {MaxNameLength} characters";
        }
        if (!char.IsAsciiLetterOrDigit(name[0]) || !name.All(IsNameCharacter))
        {
            return "must start with a letter or digit and hold only letters, digits, '.', '_' and '-'";
        }
        return null;
    }

    /// <summary>
    /// The name <see cref="Register"/> would give the VM of <paramref name="stateDirectory"/>, changing nothing:
    /// <paramref name="requested"/>, or the name it already has, or <paramref name="imageName"/> made unique.
    /// A requested name that another VM has is a usage error.
    /// </summary>
    public string ChooseName(string? requested, string imageName, string stateDirectory) =>
        Choose([.. List()], requested, imageName, stateDirectory);

    /// <summary>Gives the VM of <paramref name="stateDirectory"/> its name (see <see cref="ChooseName"/>) and records it.</summary>
    public string Register(string? requested, string imageName, string stateDirectory)
    {
        System.IO.Directory.CreateDirectory(Directory, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        using var _ = Lock();
        var known = List();
        var name = Choose(known, requested, imageName, stateDirectory);
        Write([.. known.Where(vm => vm.StateDirectory != stateDirectory), new RegisteredVm(name, stateDirectory)]);
        return name;
    }

    /// <summary>Forgets the VM of <paramref name="stateDirectory"/>; its name is free again.</summary>
    public void Remove(string stateDirectory)
    {
        if (!File.Exists(FilePath))
        {
            return;
        }
        using var _ = Lock();
        Write([.. List().Where(vm => vm.StateDirectory != stateDirectory)]);
    }

    private static string Choose(IReadOnlyList<RegisteredVm> known, string? requested, string imageName, string stateDirectory)
    {
        if (requested is not null)
        {
            if (WhyNotAName(requested) is { } why)
            {
                throw SpecException.Usage($"--name {requested}: {why}");
            }
            if (known.FirstOrDefault(vm => vm.Name == requested && vm.StateDirectory != stateDirectory) is { } other)
            {
                throw SpecException.Usage($"--name {requested}: already the name of the VM in {other.StateDirectory}; choose another, or remove that VM with lkrun rm {requested}");
            }
            return requested;
        }
        if (known.FirstOrDefault(vm => vm.StateDirectory == stateDirectory) is { } existing)
        {
            return existing.Name;
        }
        var stem = NameStem(imageName);
        var taken = known.Select(vm => vm.Name).ToHashSet(StringComparer.Ordinal);
        var name = stem;
        for (var n = 2; taken.Contains(name); n++)
        {
            name = $"{stem}-{n}";
        }
        return name;
    }

    /// <summary>The image name with what a name may not hold turned into '-', and short enough for a suffix.</summary>
    private static string NameStem(string imageName)
    {
        var stem = new string([.. imageName.Select(c => IsNameCharacter(c) ? c : '-')]).TrimStart('-', '.', '_');
        stem = stem.Length > MaxNameLength - 4 ? stem[..(MaxNameLength - 4)] : stem;
        return stem.Length == 0 ? "vm" : stem;
    }

    private static bool IsNameCharacter(char c) => char.IsAsciiLetterOrDigit(c) || c is '.' or '_' or '-';

    private string FilePath => Path.Combine(Directory, FileName);

    private IDisposable Lock() => PosixFileLock.WaitForExclusive(Path.Combine(Directory, LockFileName), TimeSpan.FromSeconds(10), "the VM registry");

    private List<RegisteredVm> Read()
    {
        try
        {
            return JsonSerializer.Deserialize(File.ReadAllText(FilePath), StateJson.Default.VmRegistryFile)?.Vms ?? [];
        }
        catch (FileNotFoundException)
        {
            return [];
        }
        catch (DirectoryNotFoundException)
        {
            return [];
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"the VM registry {FilePath} is damaged ({e.Message}); remove it to start afresh");
        }
    }

    private void Write(IReadOnlyList<RegisteredVm> vms)
    {
        var temporary = $"{FilePath}.{Environment.ProcessId}.tmp";
        File.WriteAllText(temporary, JsonSerializer.Serialize(new VmRegistryFile([.. vms.OrderBy(vm => vm.Name, StringComparer.Ordinal)]), StateJson.Default.VmRegistryFile));
        File.Move(temporary, FilePath, overwrite: true);
    }
}

internal sealed record VmRegistryFile(List<RegisteredVm> Vms);
