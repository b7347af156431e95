using System.IO.Compression;

namespace Lkrun.Services.Boot;

/// <summary>
/// LinuxKit kernels may come gzip-compressed (arm64's Image.gz, for one). QEMU's x86 loader and
/// Virtualization.framework both need the plain image, so a compressed kernel is inflated into the state dir.
/// </summary>
public static class KernelImage
{
    public static bool IsGzip(string path)
    {
        Span<byte> magic = stackalloc byte[2];
        using var file = File.OpenRead(path);
        return file.ReadAtLeast(magic, 2, throwOnEndOfStream: false) == 2 && magic[0] == 0x1f && magic[1] == 0x8b;
    }

    /// <summary>The path to boot: <paramref name="kernel"/> itself, or its copy inflated to <paramref name="target"/>.</summary>
    public static string Uncompressed(string kernel, string target)
    {
        if (!IsGzip(kernel))
        {
            return kernel;
        }
        var partial = target + ".partial";
        try
        {
            using (var source = new GZipStream(File.OpenRead(kernel), CompressionMode.Decompress))
            using (var destination = File.Create(partial))
            {
                source.CopyTo(destination);
            }
            File.Move(partial, target, overwrite: true);
        }
        catch (InvalidDataException e)
        {
            File.Delete(partial);
            throw new InvalidDataException($"{kernel}: not a valid gzip-compressed kernel ({e.Message})", e);
        }
        return target;
    }
}
