using System.Text;
using Lkrun.Spec;

namespace Lkrun.Services.Metadata;

/// <summary>
/// A VM's user data, opened once, before anything is created: the text of <c>-data</c>, or the open
/// <c>-data-file</c>. Opening once matters for a FIFO or a pipe (<c>&lt;(...)</c>), whose data only the first
/// reader gets. A data file that cannot be read is refused here, naming it.
/// </summary>
public sealed class MetadataSource : IDisposable
{
    private readonly string? _text;
    private readonly FileStream? _file;
    private readonly string? _path;

    private MetadataSource(string? text, FileStream? file, string? path)
    {
        _text = text;
        _file = file;
        _path = path;
    }

    /// <summary>Opens <paramref name="metadata"/>: <see cref="SpecException"/> naming the file when it cannot be read.</summary>
    public static MetadataSource Open(MetadataSpec metadata) => metadata switch
    {
        InlineMetadata inline => new MetadataSource(inline.Text, null, null),
        MetadataFile file => new MetadataSource(null, OpenDataFile(file.Path), file.Path),
        _ => throw new ArgumentException($"unknown metadata {metadata.GetType().Name}", nameof(metadata)),
    };

    /// <summary>
    /// Writes the metadata CD to <paramref name="path"/>, atomically (see <see cref="MetadataIso.WriteFileAsync(string, Stream, long, Guid, CancellationToken)"/>).
    /// The data file is consumed: this is done once. A data file too long for ISO 9660 is a <see cref="SpecException"/>.
    /// </summary>
    public async Task WriteIsoAsync(string path, Guid instanceId, CancellationToken cancellationToken)
    {
        if (_file is null)
        {
            await MetadataIso.WriteFileAsync(path, Encoding.UTF8.GetBytes(_text!), instanceId, cancellationToken).ConfigureAwait(false);
            return;
        }
        if (!_file.CanSeek)
        {
            // A pipe has no length to lay the image out with, so it is read whole first.
            var buffered = new MemoryStream();
            await _file.CopyToAsync(buffered, cancellationToken).ConfigureAwait(false);
            CheckLength(buffered.Length);
            await MetadataIso.WriteFileAsync(path, buffered.GetBuffer().AsMemory(0, (int)buffered.Length), instanceId, cancellationToken).ConfigureAwait(false);
            return;
        }
        CheckLength(_file.Length);
        await MetadataIso.WriteFileAsync(path, _file, _file.Length, instanceId, cancellationToken).ConfigureAwait(false);
    }

    public void Dispose() => _file?.Dispose();

    private void CheckLength(long length)
    {
        if (length > MetadataIso.MaxUserDataLength)
        {
            throw SpecException.Usage($"-data-file {_path}: {length} bytes is more than the {MetadataIso.MaxUserDataLength} an ISO 9660 file holds");
        }
    }

    private static FileStream OpenDataFile(string path)
    {
        try
        {
            return new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, bufferSize: 0, FileOptions.SequentialScan);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            var reason = e switch
            {
                _ when Directory.Exists(path) => "it is a directory",
                FileNotFoundException or DirectoryNotFoundException => "no such file",
                UnauthorizedAccessException => "permission denied",
                _ => e.Message,
            };
            throw SpecException.MissingFile($"-data-file {path}: cannot read it ({reason})");
        }
    }
}
