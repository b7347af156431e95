using System.Buffers;
using System.Text;

namespace Lkrun.Services.Metadata;

/// <summary>
/// Writes the ISO 9660 image that carries a VM's metadata: volume <c>CIDATA</c> with the files <c>config</c> and
/// <c>user-data</c> (the user data, byte for byte) and <c>meta-data</c> (<c>instance-id: UUID</c>). This is what
/// LinuxKit's metadata package and cloud-init's NoCloud source read. Names carry Rock Ridge and Joliet forms, so
/// readers see them exactly as written. <c>config</c> and <c>user-data</c> share one extent, so the data is
/// stored once; see <see cref="MetadataIsoLayout"/> for the layout.
/// </summary>
public static class MetadataIso
{
    public const string VolumeLabel = "CIDATA";

    /// <summary>The user data is one extent, whose length ISO 9660 records in 32 bits.</summary>
    public const long MaxUserDataLength = uint.MaxValue;

    private const int CopyBufferLength = 1 << 20;

    private static readonly byte[] Zeros = new byte[16 * Ecma119.SectorSize];

    /// <summary>The length in bytes of the image for user data of <paramref name="userDataLength"/> bytes.</summary>
    public static long ImageLength(long userDataLength)
    {
        CheckLength(userDataLength);
        return MetadataIsoLayout.ImageLength(userDataLength);
    }

    /// <summary>
    /// Writes the image to <paramref name="destination"/>, streaming the next <paramref name="userDataLength"/>
    /// bytes of <paramref name="userData"/> into it. Throws <see cref="EndOfStreamException"/> if
    /// <paramref name="userData"/> ends sooner.
    /// </summary>
    public static async Task WriteAsync(Stream destination, Stream userData, long userDataLength, Guid instanceId, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(destination);
        ArgumentNullException.ThrowIfNull(userData);
        CheckLength(userDataLength);
        await WriteImageAsync(destination, userDataLength, instanceId, () => CopyExactlyAsync(userData, destination, userDataLength, cancellationToken), cancellationToken)
            .ConfigureAwait(false);
    }

    /// <summary>
    /// Writes the image to the file <paramref name="path"/>, streaming the user data from
    /// <paramref name="userData"/> as <see cref="WriteAsync"/> does. The image appears under its name only once it
    /// is complete; on failure nothing is left behind and an existing file of that name is untouched.
    /// </summary>
    public static Task WriteFileAsync(string path, Stream userData, long userDataLength, Guid instanceId, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(userData);
        CheckLength(userDataLength);
        return WriteFileAtomicallyAsync(path, userDataLength, file => WriteAsync(file, userData, userDataLength, instanceId, cancellationToken));
    }

    /// <summary>Writes the image for <paramref name="userData"/> to the file <paramref name="path"/>, atomically as above.</summary>
    public static Task WriteFileAsync(string path, ReadOnlyMemory<byte> userData, Guid instanceId, CancellationToken cancellationToken = default)
    {
        CheckLength(userData.Length);
        return WriteFileAtomicallyAsync(path, userData.Length, file =>
            WriteImageAsync(file, userData.Length, instanceId, () => file.WriteAsync(userData, cancellationToken).AsTask(), cancellationToken));
    }

    private static async Task WriteFileAtomicallyAsync(string path, long userDataLength, Func<FileStream, Task> writeImage)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        var fullPath = Path.GetFullPath(path);
        // Same directory, so the final rename stays within one file system and is atomic.
        var temporary = Path.Combine(Path.GetDirectoryName(fullPath)!, $".{Path.GetFileName(fullPath)}.{Guid.NewGuid():N}.tmp");
        try
        {
            var options = new FileStreamOptions
            {
                Mode = FileMode.CreateNew,
                Access = FileAccess.Write,
                Share = FileShare.None,
                BufferSize = 0,
                PreallocationSize = MetadataIsoLayout.ImageLength(userDataLength),
            };
            var file = new FileStream(temporary, options);
            await using (file.ConfigureAwait(false))
            {
                await writeImage(file).ConfigureAwait(false);
            }
            File.Move(temporary, fullPath, overwrite: true);
        }
        catch (IOException e) when (e.GetType() == typeof(IOException) && e.Message.Contains(temporary, StringComparison.Ordinal))
        {
            DeleteQuietly(temporary);
            // A full disk, say: the user knows the image by its name, not by the temporary one it is written under.
            throw new IOException(e.Message.Replace(temporary, fullPath, StringComparison.Ordinal), e);
        }
        catch
        {
            DeleteQuietly(temporary);
            throw;
        }
    }

    /// <summary>The header, then the user data (<paramref name="writeUserData"/>), then the padding.</summary>
    private static async Task WriteImageAsync(Stream destination, long userDataLength, Guid instanceId, Func<Task> writeUserData, CancellationToken cancellationToken)
    {
        await destination.WriteAsync(MetadataIsoLayout.BuildHeader(userDataLength, instanceId, DateTimeOffset.UtcNow), cancellationToken).ConfigureAwait(false);
        await writeUserData().ConfigureAwait(false);
        await WritePaddingAsync(destination, userDataLength, cancellationToken).ConfigureAwait(false);
    }

    private static async Task CopyExactlyAsync(Stream source, Stream destination, long length, CancellationToken cancellationToken)
    {
        var buffer = ArrayPool<byte>.Shared.Rent((int)Math.Min(CopyBufferLength, Math.Max(length, 1)));
        try
        {
            for (var remaining = length; remaining > 0;)
            {
                var read = await source.ReadAsync(buffer.AsMemory(0, (int)Math.Min(buffer.Length, remaining)), cancellationToken).ConfigureAwait(false);
                if (read == 0)
                {
                    throw new EndOfStreamException($"the user data ended after {length - remaining} of {length} bytes");
                }
                await destination.WriteAsync(buffer.AsMemory(0, read), cancellationToken).ConfigureAwait(false);
                remaining -= read;
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    private static async Task WritePaddingAsync(Stream destination, long userDataLength, CancellationToken cancellationToken)
    {
        for (var padding = PaddingAfter(userDataLength); padding > 0; padding -= Zeros.Length)
        {
            await destination.WriteAsync(Zeros.AsMemory(0, (int)Math.Min(padding, Zeros.Length)), cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>Zeros from the end of the user data to the end of the volume.</summary>
    private static long PaddingAfter(long userDataLength) =>
        MetadataIsoLayout.ImageLength(userDataLength) - MetadataIsoLayout.HeaderLength - userDataLength;

    private static void CheckLength(long userDataLength)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(userDataLength);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(userDataLength, MaxUserDataLength);
    }

    private static void DeleteQuietly(string path)
    {
        try
        {
            File.Delete(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // The original failure is the one worth reporting.
        }
    }
}
