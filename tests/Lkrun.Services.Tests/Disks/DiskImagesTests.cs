using Lkrun.Services.Disks;
using Lkrun.Spec;

namespace Lkrun.Services.Tests.Disks;

public sealed class DiskImagesTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("lkrun-disks-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string PathOf(string name) => Path.Combine(_dir, name);

    [Fact]
    public void A_missing_raw_disk_is_created_sparse_at_the_requested_size()
    {
        var created = DiskImages.CreateMissing([new DiskSpec(PathOf("disk.raw"), 1024, DiskFormat.Raw)], _ => Assert.Fail("no warning expected"));
        Assert.Equal([PathOf("disk.raw")], created);
        var info = new FileInfo(PathOf("disk.raw"));
        Assert.Equal(1024L * 1024 * 1024, info.Length);
        Assert.True(AllocatedBytes(info.FullName) < 1024 * 1024, "the file should be sparse");
    }

    [Fact]
    public void An_existing_disk_is_never_truncated_and_a_size_mismatch_is_one_warning()
    {
        File.WriteAllBytes(PathOf("disk.raw"), new byte[3 * 1024 * 1024]);
        var warnings = new List<string>();
        var created = DiskImages.CreateMissing([new DiskSpec(PathOf("disk.raw"), 1, DiskFormat.Raw)], warnings.Add);
        Assert.Empty(created);
        Assert.Equal(3L * 1024 * 1024, new FileInfo(PathOf("disk.raw")).Length);
        var warning = Assert.Single(warnings);
        Assert.Contains("has 3 MiB, not the 1 MiB asked for", warning);
    }

    [Fact]
    public void A_missing_qcow2_disk_is_created_by_qemu_img()
    {
        DiskImages.CreateMissing([new DiskSpec(PathOf("disk.qcow2"), 64, DiskFormat.Qcow2)], _ => { });
        var header = File.ReadAllBytes(PathOf("disk.qcow2"))[..4];
        Assert.Equal(new byte[] { (byte)'Q', (byte)'F', (byte)'I', 0xfb }, header);
    }

    [Fact]
    public void A_failure_removes_the_disks_created_before_it()
    {
        var disks = new[]
        {
            new DiskSpec(PathOf("first.raw"), 1, DiskFormat.Raw),
            new DiskSpec(PathOf("missing-dir/second.raw"), 1, DiskFormat.Raw),
        };
        Assert.ThrowsAny<IOException>(() => DiskImages.CreateMissing(disks, _ => { }));
        Assert.False(File.Exists(PathOf("first.raw")));
    }

    private static long AllocatedBytes(string path)
    {
        var output = System.Diagnostics.Process.Start(new System.Diagnostics.ProcessStartInfo("stat", ["-c", "%b %B", path]) { RedirectStandardOutput = true })!;
        var fields = output.StandardOutput.ReadToEnd().Split(' ');
        output.WaitForExit();
        return long.Parse(fields[0]) * long.Parse(fields[1]);
    }
}
