using System.Globalization;
using Lkrun.Spec;

namespace Lkrun.Services.Virtiofs;

/// <summary>
/// The virtiofsd lkrun runs for QEMU's <c>-virtiofs</c> shares: Debian 12's, QEMU's own C daemon from
/// qemu-system-common (<c>LKRUN_VIRTIOFSD</c> names another binary with the same command line), and who it runs
/// as. It must be root: when lkrun is not, it is root in a user namespace that maps lkrun's user to root and, when
/// lkrun's user has <paramref name="Subordinates"/>, those ids to 1 and up (<see cref="VirtiofsdCommand"/>).
/// </summary>
public sealed record Virtiofsd(string Binary, bool AsRoot, SubordinateIds? Subordinates = null)
{
    /// <summary>Where Debian 12's qemu-system-common installs it (QEMU 8 dropped the C daemon from its sources).</summary>
    public const string DebianPath = "/usr/lib/qemu/virtiofsd";

    public const string EnvironmentVariable = "LKRUN_VIRTIOFSD";

    /// <summary>
    /// Finds the binary and how to run it, creating nothing; a missing binary, or a user lkrun cannot give it a
    /// namespace for, is one line that says what to install or do.
    /// </summary>
    public static Virtiofsd Find()
    {
        var virtiofsd = Find(Environment.GetEnvironmentVariable(EnvironmentVariable), Environment.IsPrivilegedProcess);
        if (virtiofsd.AsRoot)
        {
            return virtiofsd;
        }
        var newIdMaps = OnPath("newuidmap") && OnPath("newgidmap");
        return virtiofsd with
        {
            Subordinates = UserNamespaceIds(
                Environment.UserName,
                uint.Parse(StatusField("Uid")[1], CultureInfo.InvariantCulture),
                hasSupplementaryGroups: StatusField("Groups").Length > 0,
                newIdMaps ? ReadIfExists(SubordinateIds.UidFile) : null,
                newIdMaps ? ReadIfExists(SubordinateIds.GidFile) : null),
        };
    }

    internal static Virtiofsd Find(string? configured, bool asRoot)
    {
        var binary = string.IsNullOrEmpty(configured) ? DebianPath : configured;
        if (!File.Exists(binary))
        {
            throw new VirtiofsException(
                $"-virtiofs needs virtiofsd, and {binary} is missing; install it (Debian 12: apt-get install qemu-system-common) or set {EnvironmentVariable} to its path");
        }
        return new Virtiofsd(Path.GetFullPath(binary), asRoot);
    }

    /// <summary>
    /// The subordinate ids of a user who is not root, when newuidmap and newgidmap can apply them (null for the
    /// files when they cannot). Without them the namespace maps lkrun's user alone and may not drop supplementary
    /// groups (the kernel forbids setgroups there), which Debian 12's virtiofsd insists on doing: a user who has
    /// some is refused up front.
    /// </summary>
    internal static SubordinateIds? UserNamespaceIds(string user, uint uid, bool hasSupplementaryGroups, string? subuid, string? subgid)
    {
        var ids = subuid is null || subgid is null ? null : SubordinateIds.Parse(user, uid, subuid, subgid);
        if (ids is null && hasSupplementaryGroups)
        {
            throw new VirtiofsException(
                $"-virtiofs: virtiofsd must drop the supplementary groups of {user}, which its user namespace allows only with subordinate ids; " +
                $"give {user} some (apt-get install uidmap; usermod --add-subuids 100000-165535 --add-subgids 100000-165535 {user}) or run lkrun as root");
        }
        return ids;
    }

    /// <summary>A field of <c>/proc/self/status</c>: <c>Uid</c> gives the real, effective, saved and filesystem uids.</summary>
    private static string[] StatusField(string name) =>
        File.ReadLines("/proc/self/status")
            .Single(line => line.StartsWith(name + ":", StringComparison.Ordinal))[(name.Length + 1)..]
            .Split((char[])['\t', ' '], StringSplitOptions.RemoveEmptyEntries);

    private static string? ReadIfExists(string path) => File.Exists(path) ? File.ReadAllText(path) : null;

    private static bool OnPath(string name) =>
        (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':', StringSplitOptions.RemoveEmptyEntries).Any(dir => File.Exists(Path.Combine(dir, name)));
}

/// <summary>A share's virtiofsd cannot be found, cannot start, or stopped while the VM ran; the message is one line.</summary>
public sealed class VirtiofsException(string message) : Exception(message), IUserError
{
    public int ExitCode => 1;
}
