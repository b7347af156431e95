using Lkrun.Services.Virtiofs;
using Lkrun.Spec;

namespace Lkrun.Services.Tests.Virtiofs;

public sealed class VirtiofsdCommandTests
{
    private const string Binary = "/usr/lib/qemu/virtiofsd";

    private static readonly string[] Daemon =
        [Binary, "--fd=7", "-o", "source=/srv/share", "-o", "sandbox=namespace", "-o", "cache=auto", "-o", "no_xattr"];

    public static TheoryData<string, bool, bool, string[]> Commands => new()
    {
        { "root, read-write: virtiofsd as it is", true, false, Daemon },
        {
            "root, read-only: a read-only bind in a mount namespace of its own", true, true,
            ["unshare", "--mount", "--", "sh", "-c", VirtiofsdCommand.ReadOnlyScript, "lkrun-virtiofs-ro", "/srv/share", .. Daemon]
        },
        { "a user, read-write: root in a user namespace", false, false, ["unshare", "--user", "--map-root-user", "--", .. Daemon] },
        {
            "a user, read-only: both", false, true,
            ["unshare", "--user", "--map-root-user", "--mount", "--", "sh", "-c", VirtiofsdCommand.ReadOnlyScript, "lkrun-virtiofs-ro", "/srv/share", .. Daemon]
        },
    };

    [Theory]
    [MemberData(nameof(Commands))]
    public void The_command_depends_on_who_runs_lkrun_and_on_read_only(string what, bool asRoot, bool readOnly, string[] expected)
    {
        var argv = VirtiofsdCommand.Build(new Virtiofsd(Binary, asRoot), new SharedDirectorySpec("/srv/share", "virtiofs0", readOnly), listeningFd: 7);
        Assert.True(expected.SequenceEqual(argv), $"{what}: {string.Join(' ', argv)}");
    }

    [Fact]
    public void A_user_with_subordinate_ids_maps_them_below_root()
    {
        var virtiofsd = new Virtiofsd(Binary, AsRoot: false, new SubordinateIds(100000, 65536, 200000, 1000));
        var argv = VirtiofsdCommand.Build(virtiofsd, new SharedDirectorySpec("/srv/share", "virtiofs0", false), 7);
        Assert.Equal(
            ["unshare", "--user", "--map-user=0", "--map-group=0", "--map-users=100000,1,65536", "--map-groups=200000,1,1000", "--", .. Daemon],
            argv);
    }

    [Fact]
    public void The_tag_is_qemus_business_not_virtiofsds()
    {
        var argv = VirtiofsdCommand.Build(new Virtiofsd(Binary, true), new SharedDirectorySpec("/srv/share", "secret-tag", false), 7);
        Assert.DoesNotContain(argv, arg => arg.Contains("secret-tag", StringComparison.Ordinal));
    }

    [Theory]
    [InlineData("/srv/a,b", "/srv/a\\,b")]
    [InlineData("/srv/a\\b", "/srv/a\\\\b")]
    [InlineData("/srv/\\101,x", "/srv/\\\\101\\,x")]
    public void Commas_and_backslashes_in_the_path_are_escaped_for_virtiofsds_option_parser(string path, string escaped)
    {
        var argv = VirtiofsdCommand.Build(new Virtiofsd(Binary, true), new SharedDirectorySpec(path, "virtiofs0", false), 7);
        Assert.Contains($"source={escaped}", argv);
    }

    [Fact]
    public void The_read_only_script_takes_the_path_as_a_parameter_never_as_script_text()
    {
        const string path = "/srv/$(touch /tmp/x) \"quoted\"";
        var argv = VirtiofsdCommand.Build(new Virtiofsd(Binary, true), new SharedDirectorySpec(path, "virtiofs0", true), 7);
        Assert.Equal(VirtiofsdCommand.ReadOnlyScript, argv[argv.ToList().IndexOf("-c") + 1]);
        Assert.Equal(path, argv[argv.ToList().IndexOf("lkrun-virtiofs-ro") + 1]);
    }
}
