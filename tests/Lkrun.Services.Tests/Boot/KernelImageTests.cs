using System.IO.Compression;
using Lkrun.Services.Boot;

namespace Lkrun.Services.Tests.Boot;

public sealed class KernelImageTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("lkrun-kernel-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void A_plain_kernel_is_used_in_place()
    {
        var kernel = Path.Combine(_dir, "k");
        File.WriteAllBytes(kernel, [0x4d, 0x5a, 1, 2, 3]);
        Assert.Equal(kernel, KernelImage.Uncompressed(kernel, Path.Combine(_dir, "kernel")));
        Assert.False(File.Exists(Path.Combine(_dir, "kernel")));
    }

    [Fact]
    public void A_gzip_kernel_is_inflated_into_the_state_dir()
    {
        var content = new byte[100_000];
        new Random(7).NextBytes(content);
        var kernel = Path.Combine(_dir, "k.gz");
        using (var gzip = new GZipStream(File.Create(kernel), CompressionLevel.Fastest))
        {
            gzip.Write(content);
        }
        var inflated = KernelImage.Uncompressed(kernel, Path.Combine(_dir, "kernel"));
        Assert.Equal(Path.Combine(_dir, "kernel"), inflated);
        Assert.Equal(content, File.ReadAllBytes(inflated));
    }

    [Fact]
    public void A_corrupt_gzip_kernel_fails_naming_the_file_and_leaves_nothing()
    {
        var kernel = Path.Combine(_dir, "bad.gz");
        File.WriteAllBytes(kernel, [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3, 0xff, 0xff, 0xff]);
        var error = Assert.Throws<InvalidDataException>(() => KernelImage.Uncompressed(kernel, Path.Combine(_dir, "kernel")));
        Assert.Contains(kernel, error.Message);
        Assert.Equal([kernel], Directory.GetFiles(_dir));
    }
}
