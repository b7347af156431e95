using Lkrun.Services.Virtiofs;

namespace Lkrun.Services.Tests.Virtiofs;

public sealed class VirtiofsdTests
{
    [Fact]
    public void Debians_virtiofsd_is_the_default()
    {
        Assert.SkipUnless(File.Exists(Virtiofsd.DebianPath), "qemu-system-common is not installed");
        Assert.Equal(new Virtiofsd(Virtiofsd.DebianPath, AsRoot: false), Virtiofsd.Find(configured: null, asRoot: false));
        Assert.Equal(Virtiofsd.DebianPath, Virtiofsd.Find(configured: "", asRoot: true).Binary);
    }

    [Fact]
    public void A_missing_virtiofsd_is_one_line_naming_the_package()
    {
        var error = Assert.Throws<VirtiofsException>(() => Virtiofsd.Find("/nonexistent/virtiofsd", asRoot: true));
        Assert.Equal(
            "-virtiofs needs virtiofsd, and /nonexistent/virtiofsd is missing; install it (Debian 12: apt-get install qemu-system-common) or set LKRUN_VIRTIOFSD to its path",
            error.Message);
        Assert.Equal(1, error.ExitCode);
    }

    [Fact]
    public void A_user_with_subordinate_ids_gets_them_whatever_their_groups()
    {
        const string subuid = "other:1:2\nalice:100000:65536\nalice:300000:10\n";
        const string subgid = "# comment\n1000:200000:500\n";
        Assert.Equal(new SubordinateIds(100000, 65536, 200000, 500), Virtiofsd.UserNamespaceIds("alice", 1000, hasSupplementaryGroups: true, subuid, subgid));
    }

    [Fact]
    public void Without_subordinate_ids_a_user_without_supplementary_groups_maps_alone()
    {
        Assert.Null(Virtiofsd.UserNamespaceIds("alice", 1000, hasSupplementaryGroups: false, "bob:100000:65536\n", "alice:100000:65536\n"));
        Assert.Null(Virtiofsd.UserNamespaceIds("alice", 1000, hasSupplementaryGroups: false, null, null));
    }

    [Fact]
    public void Without_subordinate_ids_supplementary_groups_are_refused_up_front_saying_what_to_do()
    {
        var error = Assert.Throws<VirtiofsException>(() => Virtiofsd.UserNamespaceIds("alice", 1000, hasSupplementaryGroups: true, "alice:100000:0\n", ""));
        Assert.StartsWith("-virtiofs: virtiofsd must drop the supplementary groups of alice", error.Message);
        Assert.Contains("usermod --add-subuids 100000-165535 --add-subgids 100000-165535 alice", error.Message);
        Assert.EndsWith("or run lkrun as root", error.Message);
    }

    [Theory]
    [InlineData("alice:100000:65536", 100000L, 65536L)]
    [InlineData("1000:5:6", 5L, 6L)]
    [InlineData("alice:x:65536\nalice:7:8", 7L, 8L)]
    [InlineData("alice:100000", null, null)]
    [InlineData("alicia:100000:65536", null, null)]
    public void Subordinate_id_files_are_read_as_newuidmap_reads_them(string text, long? start, long? count)
    {
        var ids = SubordinateIds.Parse("alice", 1000, text, text);
        Assert.Equal(start is null ? null : new SubordinateIds(start.Value, count!.Value, start.Value, count.Value), ids);
    }
}
