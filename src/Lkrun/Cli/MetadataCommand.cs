using System.CommandLine;
using System.Text;
using Lkrun.Services.Metadata;

namespace Lkrun.Cli;

/// <summary>
/// <c>lkrun metadata create FILE.iso DATA</c>, as in linuxkit: writes the metadata image that <c>run -data</c>
/// attaches, with a fresh random instance id. <c>-data-file PATH</c> (one dash or two) takes the data from a file
/// instead, for data too long for a command line.
/// </summary>
public sealed class MetadataCommand
{
    private readonly Argument<string?> _iso = new("file.iso") { Arity = ArgumentArity.ZeroOrOne, Description = "Path of the ISO image to write" };
    private readonly Argument<string?> _data = new("metadata") { Arity = ArgumentArity.ZeroOrOne, Description = "The metadata, written to config and user-data in the image" };
    private readonly Option<string?> _dataFile = new("--data-file", "-data-file") { Description = "Path of a file holding the metadata, instead of the metadata argument", HelpName = "PATH" };

    public MetadataCommand()
    {
        var create = new Command("create", "Create an ISO with metadata: config and user-data hold it byte for byte, meta-data the instance id. This is compatible with the linuxkit/metadata package and cloud-init's NoCloud source.");
        create.Arguments.Add(_iso);
        create.Arguments.Add(_data);
        create.Options.Add(_dataFile);
        create.SetAction((result, cancellation) => CreateAsync(result.GetValue(_iso), result.GetValue(_data), result.GetValue(_dataFile), cancellation));

        Command = new Command("metadata", "Manage ISO metadata");
        Command.Subcommands.Add(create);
    }

    public Command Command { get; }

    private static async Task<int> CreateAsync(string? iso, string? data, string? dataFile, CancellationToken cancellation)
    {
        var usage = (iso, data, dataFile) switch
        {
            (null, _, _) => "missing the ISO file name",
            (_, null, null) => "missing the metadata",
            (_, not null, not null) => "give the metadata or -data-file, not both",
            _ => null,
        };
        if (usage is not null)
        {
            Console.Error.WriteLine($"lkrun: {usage}; see 'lkrun metadata create --help'");
            return 2;
        }

        var instanceId = Guid.NewGuid();
        if (data is not null)
        {
            return await WriteAsync(iso!, () => MetadataIso.WriteFileAsync(iso!, Encoding.UTF8.GetBytes(data), instanceId, cancellation));
        }

        FileStream source;
        try
        {
            source = new FileStream(dataFile!, FileMode.Open, FileAccess.Read, FileShare.Read, bufferSize: 0, FileOptions.SequentialScan);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            Console.Error.WriteLine($"lkrun: cannot read data file {dataFile}: {Describe(e, dataFile!)}");
            return 1;
        }
        await using (source)
        {
            if (!source.CanSeek)
            {
                // A pipe has no length to plan the image with, so it is read whole first.
                var buffered = new MemoryStream();
                await source.CopyToAsync(buffered, cancellation);
                return await WriteAsync(iso!, () => MetadataIso.WriteFileAsync(iso!, buffered.GetBuffer().AsMemory(0, (int)buffered.Length), instanceId, cancellation));
            }
            return await WriteAsync(iso!, () => MetadataIso.WriteFileAsync(iso!, source, source.Length, instanceId, cancellation));
        }
    }

    private static async Task<int> WriteAsync(string iso, Func<Task> write)
    {
        try
        {
            await write();
            return 0;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            Console.Error.WriteLine($"lkrun: cannot write {iso}: {Describe(e, iso)}");
            return 1;
        }
        catch (ArgumentOutOfRangeException)
        {
            Console.Error.WriteLine($"lkrun: cannot write {iso}: the metadata is longer than {MetadataIso.MaxUserDataLength} bytes");
            return 1;
        }
    }

    /// <summary>The reason alone, since the message around it already names the file.</summary>
    private static string Describe(Exception e, string path) => e switch
    {
        _ when Directory.Exists(path) => "it is a directory",
        FileNotFoundException => "no such file",
        DirectoryNotFoundException => "no such directory",
        UnauthorizedAccessException => "permission denied",
        EndOfStreamException => "the file shrank while it was read",
        // .NET appends " : 'path'" to the system's reason.
        _ => e.Message.Split(" : '")[0].TrimEnd('.'),
    };
}
