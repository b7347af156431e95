namespace Lkrun.Services.Boot;

/// <summary>
/// A kernel image that lkrun cannot take apart: a malformed setup header or ELF, a payload that does not
/// decompress, or a format lkrun does not handle. The message is a few words, without the file's name.
/// </summary>
public sealed class KernelImageException(string message, Exception? inner = null) : Exception(message, inner);

/// <summary>The limits every kernel parser checks before it allocates or reads.</summary>
public static class KernelImageLimits
{
    /// <summary>
    /// The largest kernel file lkrun reads, and the largest decompressed payload it allocates for: distribution
    /// kernels are 10-70 MiB either way.
    /// </summary>
    public const int MaxImageBytes = 512 * 1024 * 1024;

    /// <summary>More program headers than this is not a kernel (vmlinux has five or six).</summary>
    public const int MaxProgramHeaders = 64;
}
