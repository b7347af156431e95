using System.CommandLine;
using Lkrun.Services.Metadata;
using Lkrun.Spec;

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
            (_, null, "") => "-data-file needs a path",
            _ => null,
        };
        if (usage is not null)
        {
            Console.Error.WriteLine($"lkrun: {usage}; see 'lkrun metadata create --help'");
            return 2;
        }

        MetadataSpec metadata = data is not null ? new InlineMetadata(data) : new MetadataFile(Path.GetFullPath(dataFile!));
        try
        {
            using var source = MetadataSource.Open(metadata);
            await source.WriteIsoAsync(iso!, Guid.NewGuid(), cancellation);
            return 0;
        }
        catch (SpecException e)
        {
            Console.Error.WriteLine($"lkrun: {e.Message}");
            return e.ExitCode;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            Console.Error.WriteLine($"lkrun: cannot write {iso}: {Describe(e, iso!)}");
            return 1;
        }
    }

    /// <summary>The reason alone, since the message around it already names the file.</summary>
    private static string Describe(Exception e, string path) => e switch
    {
        _ when Directory.Exists(path) => "it is a directory",
        DirectoryNotFoundException => "no such directory",
        UnauthorizedAccessException => "permission denied",
        EndOfStreamException => "the data file shrank while it was read",
        // .NET appends " : 'path'" to the system's reason.
        _ => e.Message.Split(" : '")[0].TrimEnd('.'),
    };
}
