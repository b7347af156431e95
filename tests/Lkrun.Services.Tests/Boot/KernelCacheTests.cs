using Lkrun.Services.Boot;

namespace Lkrun.Services.Tests.Boot;

public sealed class KernelCacheTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("lkrun-cache-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private KernelCache Cache(long maxBytes = KernelCache.DefaultMaxBytes) => new(Path.Combine(_dir, "kernels"), maxBytes);

    [Theory]
    [InlineData("/xdg/cache", "/xdg/cache/lkrun/kernels")]
    [InlineData(null, "/home/u/.cache/lkrun/kernels")]
    [InlineData("", "/home/u/.cache/lkrun/kernels")]
    [InlineData("relative/cache", "/home/u/.cache/lkrun/kernels")]
    public void The_cache_follows_xdg_cache_home(string? cacheHome, string expected)
    {
        Assert.Equal(expected, KernelCache.ForHome(cacheHome, "/home/u").Directory);
    }

    [Fact]
    public void The_key_is_the_sha256_of_the_content()
    {
        Assert.Equal("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", KernelCache.KeyOf("abc"u8));
    }

    [Fact]
    public void A_stored_entry_is_found_whole_and_leaves_no_temporary_file()
    {
        var cache = Cache();
        var path = cache.Store("k1", KernelCache.KernelSuffix, [1, 2, 3]);
        Assert.Equal(path, cache.Find("k1", KernelCache.KernelSuffix));
        Assert.Equal([1, 2, 3], File.ReadAllBytes(path));
        Assert.Equal([path], Directory.GetFiles(cache.Directory));
        Assert.Null(cache.Find("k1", KernelCache.FallbackSuffix));
        Assert.Null(cache.Find("k2", KernelCache.KernelSuffix));
    }

    [Fact]
    public void The_directory_is_private_to_the_user()
    {
        var cache = Cache();
        cache.Store("k1", KernelCache.KernelSuffix, [1]);
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute, File.GetUnixFileMode(cache.Directory));
    }

    [Fact]
    public void Nothing_is_found_before_the_cache_exists()
    {
        Assert.Null(Cache().Find("k1", KernelCache.KernelSuffix));
        Assert.False(Directory.Exists(Cache().Directory));
    }

    [Fact]
    public void Finding_an_entry_marks_it_as_used()
    {
        var cache = Cache();
        var path = cache.Store("k1", KernelCache.KernelSuffix, [1]);
        File.SetLastWriteTimeUtc(path, DateTime.UtcNow.AddDays(-3));
        cache.Find("k1", KernelCache.KernelSuffix);
        Assert.InRange(DateTime.UtcNow - File.GetLastWriteTimeUtc(path), TimeSpan.Zero, TimeSpan.FromMinutes(1));
    }

    [Fact]
    public void Pruning_removes_the_least_recently_used_entries_beyond_the_size_and_spares_recent_ones()
    {
        var cache = Cache(maxBytes: 250);
        var oldest = cache.Store("a", KernelCache.KernelSuffix, new byte[100]);
        var older = cache.Store("b", KernelCache.KernelSuffix, new byte[100]);
        var old = cache.Store("c", KernelCache.KernelSuffix, new byte[100]);
        // Three entries over the bound, all used within the hour: none goes.
        Assert.Equal(3, Directory.GetFiles(cache.Directory).Length);
        File.SetLastWriteTimeUtc(oldest, DateTime.UtcNow.AddDays(-3));
        File.SetLastWriteTimeUtc(older, DateTime.UtcNow.AddDays(-2));
        File.SetLastWriteTimeUtc(old, DateTime.UtcNow.AddDays(-1));
        var fresh = cache.Store("d", KernelCache.KernelSuffix, new byte[100]);
        Assert.Equal([fresh, old], Directory.GetFiles(cache.Directory).Order().Reverse());
    }

    [Fact]
    public void The_entry_just_written_stays_even_when_alone_it_is_over_the_size()
    {
        var cache = Cache(maxBytes: 10);
        var path = cache.Store("big", KernelCache.KernelSuffix, new byte[100]);
        Assert.True(File.Exists(path));
    }

    [Fact]
    public void Temporary_files_of_dead_writers_go_after_an_hour_and_live_ones_stay()
    {
        var cache = Cache();
        Directory.CreateDirectory(cache.Directory);
        var dead = Path.Combine(cache.Directory, "k.vmlinux.1.dead.tmp");
        var live = Path.Combine(cache.Directory, "k.vmlinux.2.live.tmp");
        File.WriteAllBytes(dead, [1]);
        File.WriteAllBytes(live, [1]);
        File.SetLastWriteTimeUtc(dead, DateTime.UtcNow.AddHours(-2));
        cache.Prune();
        Assert.False(File.Exists(dead));
        Assert.True(File.Exists(live));
    }

    [Fact]
    public void Concurrent_writers_of_one_entry_leave_one_whole_entry()
    {
        var cache = Cache();
        var content = new byte[1024 * 1024];
        new Random(3).NextBytes(content);
        Parallel.For(0, 8, _ => cache.Store("same", KernelCache.KernelSuffix, content));
        var path = Assert.Single(Directory.GetFiles(cache.Directory));
        Assert.Equal(content, File.ReadAllBytes(path));
    }

    [Fact]
    public void A_cache_that_cannot_be_created_fails_with_an_io_error()
    {
        File.WriteAllText(Path.Combine(_dir, "kernels"), "a file where the directory should be");
        Assert.ThrowsAny<IOException>(() => Cache().Store("k", KernelCache.KernelSuffix, [1]));
    }
}
