using System.Security.Cryptography;

namespace Lkrun.Services.Boot;

/// <summary>
/// The per-user cache of kernels lkrun decompressed, in <c>$XDG_CACHE_HOME/lkrun/kernels</c> (or
/// <c>~/.cache/lkrun/kernels</c>), shared by every VM of the user. Entries are named by the SHA-256 of the
/// bzImage they come from:
/// <list type="bullet">
/// <item><c>HASH.vmlinux</c>: the decompressed ELF kernel, with its PVH entry;</item>
/// <item><c>HASH.fallback</c>: one line saying why the bzImage has no usable ELF (no PVH note, an unsupported
/// compression, a damaged payload), so a later boot falls back at once rather than decompressing again.</item>
/// </list>
/// Entries are written to a temporary file and renamed into place, so concurrent lkruns each see a whole entry
/// or none, and the last of two identical writes wins. Every use refreshes an entry's modification time; after a
/// write, the least recently used entries go until the cache is within its size, sparing those used within the
/// last hour, since a starting lkrun may be about to hand one to QEMU.
/// </summary>
public sealed class KernelCache(string directory, long maxBytes = KernelCache.DefaultMaxBytes)
{
    public const long DefaultMaxBytes = 512L * 1024 * 1024;
    public const string KernelSuffix = ".vmlinux";
    public const string FallbackSuffix = ".fallback";
    private const string TemporarySuffix = ".tmp";

    /// <summary>Entries used more recently than this are never pruned.</summary>
    public static readonly TimeSpan RecentUse = TimeSpan.FromHours(1);

    public string Directory { get; } = directory;

    public long MaxBytes { get; } = maxBytes;

    /// <summary>The cache of the user running lkrun, following the XDG base directory rules.</summary>
    public static KernelCache ForCurrentUser() =>
        ForHome(Environment.GetEnvironmentVariable("XDG_CACHE_HOME"), Environment.GetFolderPath(Environment.SpecialFolder.UserProfile));

    /// <summary><c>$XDG_CACHE_HOME/lkrun/kernels</c>; <c>~/.cache/lkrun/kernels</c> when it is unset or relative, which XDG says to ignore.</summary>
    public static KernelCache ForHome(string? cacheHome, string home) =>
        new(Path.Combine(
            string.IsNullOrEmpty(cacheHome) || !Path.IsPathRooted(cacheHome) ? Path.Combine(home, ".cache") : cacheHome,
            "lkrun",
            "kernels"));

    /// <summary>The cache key of a kernel image: the hex SHA-256 of its content.</summary>
    public static string KeyOf(ReadOnlySpan<byte> image) => Convert.ToHexStringLower(SHA256.HashData(image));

    /// <summary>The path of the entry <paramref name="key"/> + <paramref name="suffix"/>, marked as used; null when there is none.</summary>
    public string? Find(string key, string suffix)
    {
        var path = PathOf(key, suffix);
        try
        {
            File.SetLastWriteTimeUtc(path, DateTime.UtcNow);
            return path;
        }
        catch (FileNotFoundException)
        {
            return null;
        }
        catch (DirectoryNotFoundException)
        {
            return null;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // A cache this user may read but not touch (shared, or on a read-only file system) still serves.
            return File.Exists(path) ? path : null;
        }
    }

    /// <summary>Writes an entry whole (temporary file, flushed, then renamed into place), prunes, and returns its path.</summary>
    public string Store(string key, string suffix, ReadOnlySpan<byte> content)
    {
        System.IO.Directory.CreateDirectory(Directory, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        var path = PathOf(key, suffix);
        var temporary = $"{path}.{Environment.ProcessId}.{Guid.NewGuid():N}{TemporarySuffix}";
        try
        {
            using (var file = new FileStream(temporary, FileMode.CreateNew, FileAccess.Write, FileShare.None))
            {
                file.Write(content);
                // A crash right after the rename must not leave a named entry with missing data.
                file.Flush(flushToDisk: true);
            }
            File.Move(temporary, path, overwrite: true);
        }
        catch
        {
            File.Delete(temporary);
            throw;
        }
        Prune(keep: path);
        return path;
    }

    /// <summary>Removes an entry found unusable; another lkrun may have removed it first.</summary>
    public void Remove(string key, string suffix) => File.Delete(PathOf(key, suffix));

    /// <summary>
    /// Deletes the least recently used entries (and temporary files left by lkruns that died while writing) until
    /// the cache is within <see cref="MaxBytes"/>, sparing <paramref name="keep"/> and entries used within
    /// <see cref="RecentUse"/>. An entry another lkrun deletes first is simply gone.
    /// </summary>
    public void Prune(string? keep = null)
    {
        var now = DateTime.UtcNow;
        List<FileInfo> entries;
        try
        {
            entries = new DirectoryInfo(Directory).EnumerateFiles().OrderByDescending(file => file.LastWriteTimeUtc).ToList();
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // Pruning is housekeeping: the next write tries again.
            return;
        }
        var total = 0L;
        foreach (var entry in entries)
        {
            var recent = now - entry.LastWriteTimeUtc < RecentUse || entry.FullName == keep;
            var stale = entry.Name.EndsWith(TemporarySuffix, StringComparison.Ordinal) || total + entry.Length > MaxBytes;
            if (stale && !recent)
            {
                TryDelete(entry);
            }
            else
            {
                total += entry.Length;
            }
        }
    }

    private string PathOf(string key, string suffix) => Path.Combine(Directory, key + suffix);

    private static void TryDelete(FileInfo entry)
    {
        try
        {
            entry.Delete();
        }
        catch (IOException)
        {
            // Gone already, or not ours to delete: the next prune tries again.
        }
        catch (UnauthorizedAccessException)
        {
        }
    }
}
