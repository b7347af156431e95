using System.Globalization;
using Lkrun.Spec;

namespace Lkrun.Services.Virtiofs;

/// <summary>
/// The command that serves one <c>-virtiofs</c> share with Debian 12's virtiofsd. Pure: the same share gives the
/// same argv, and nothing on the host is touched.
/// <para>
/// virtiofsd serves the vhost-user socket lkrun already listens on (<c>--fd</c>), so it writes no pid file of its
/// own (it would under <c>/var/run/virtiofsd</c>, which only root may write). It keeps its default sandbox: new
/// mount, pid and net namespaces, with the shared directory as its root. <c>cache=auto</c> gives the guest
/// close-to-open consistency with a one-second metadata timeout, so files the host changes show up in the guest
/// as they do over NFS; extended attributes stay off, so a guest cannot set <c>security.*</c> or
/// <c>trusted.*</c> attributes on host files.
/// </para>
/// <para>
/// virtiofsd must run as root. When lkrun is not root it runs in a user namespace that maps lkrun's user to root:
/// the guest's root then acts as lkrun's user on the host. With subordinate ids, util-linux's unshare has
/// newuidmap map them to ids 1 and up, so files of the guest's other users belong to those ids on the host;
/// without, only lkrun's user is mapped (<c>--map-root-user</c>), the guest's other users cannot create files, and
/// files of other host users look like the overflow id (65534) in the guest. A read-only share is a read-only bind mount of the
/// directory, made in a mount namespace of virtiofsd's own before it starts, so the host refuses every write
/// whatever the guest mounts.
/// </para>
/// </summary>
public static class VirtiofsdCommand
{
    /// <summary>The name a read-only share's shell runs under, which its error messages start with.</summary>
    public const string ReadOnlyShellName = "lkrun-virtiofs-ro";

    /// <summary>
    /// Binds the share onto itself read-only, then runs virtiofsd in its place. The paths are positional
    /// parameters, never part of the script.
    /// </summary>
    public const string ReadOnlyScript = "mount --bind -o ro -- \"$1\" \"$1\" && shift && exec \"$@\"";

    /// <summary>The argv that serves <paramref name="share"/> on the listening socket <paramref name="listeningFd"/>.</summary>
    public static IReadOnlyList<string> Build(Virtiofsd virtiofsd, SharedDirectorySpec share, int listeningFd)
    {
        string[] daemon =
        [
            virtiofsd.Binary,
            string.Create(CultureInfo.InvariantCulture, $"--fd={listeningFd}"),
            "-o", $"source={EscapeOption(share.Path)}",
            "-o", "sandbox=namespace",
            "-o", "cache=auto",
            "-o", "no_xattr",
        ];
        var namespaces = new List<string>();
        if (!virtiofsd.AsRoot)
        {
            namespaces.AddRange(virtiofsd.Subordinates is { } ids
                ?
                [
                    "--user", "--map-user=0", "--map-group=0",
                    string.Create(CultureInfo.InvariantCulture, $"--map-users={ids.UidStart},1,{ids.UidCount}"),
                    string.Create(CultureInfo.InvariantCulture, $"--map-groups={ids.GidStart},1,{ids.GidCount}"),
                ]
                : ["--user", "--map-root-user"]);
        }
        if (share.ReadOnly)
        {
            // unshare makes the new mount namespace's mounts private, so the bind never reaches the host's namespace.
            namespaces.Add("--mount");
        }
        return namespaces.Count == 0 ? daemon : [
            "unshare", .. namespaces, "--",
            .. share.ReadOnly ? (string[])["sh", "-c", ReadOnlyScript, ReadOnlyShellName, share.Path] : [],
            .. daemon,
        ];
    }

    /// <summary>virtiofsd splits <c>-o</c> values at commas and reads a backslash as an escape, as libfuse does.</summary>
    public static string EscapeOption(string value) =>
        value.Replace("\\", "\\\\", StringComparison.Ordinal).Replace(",", "\\,", StringComparison.Ordinal);
}
