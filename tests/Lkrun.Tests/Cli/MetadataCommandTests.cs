using System.Diagnostics;
using System.Text;
using System.Text.RegularExpressions;

namespace Lkrun.Tests.Cli;

/// <summary>
/// <c>lkrun metadata create</c> run as a process, as users run it; the image it writes is read back with isoinfo
/// (genisoimage), which must be installed.
/// </summary>
public sealed partial class MetadataCommandTests : IDisposable
{
    private readonly string _directory = Directory.CreateTempSubdirectory("lkrun-metadata-cli-").FullName;

    public void Dispose() => Directory.Delete(_directory, recursive: true);

    private string Iso => Path.Combine(_directory, "data.iso");

    [Fact]
    public async Task Create_writes_the_data_and_a_fresh_instance_id_each_time()
    {
        var first = await LkrunAsync("metadata", "create", Iso, "{\"hostname\": \"a\"}");
        Assert.Equal((0, "", ""), (first.ExitCode, first.Output, first.Error));
        Assert.Equal("{\"hostname\": \"a\"}"u8.ToArray(), await ExtractAsync(Iso, "/config"));
        Assert.Equal("{\"hostname\": \"a\"}"u8.ToArray(), await ExtractAsync(Iso, "/user-data"));
        var firstId = InstanceId(await ExtractAsync(Iso, "/meta-data"));

        Assert.Equal(0, (await LkrunAsync("metadata", "create", Iso, "second")).ExitCode);
        Assert.Equal("second"u8.ToArray(), await ExtractAsync(Iso, "/user-data"));
        Assert.NotEqual(firstId, InstanceId(await ExtractAsync(Iso, "/meta-data")));
        Assert.Equal(["data.iso"], Directory.GetFileSystemEntries(_directory).Select(Path.GetFileName));
    }

    [Fact]
    public async Task Empty_data_makes_empty_files()
    {
        Assert.Equal(0, (await LkrunAsync("metadata", "create", Iso, "")).ExitCode);
        Assert.Empty(await ExtractAsync(Iso, "/config"));
        Assert.Empty(await ExtractAsync(Iso, "/user-data"));
    }

    [Theory]
    [InlineData("-data-file")]
    [InlineData("--data-file")]
    public async Task Data_file_takes_binary_data_byte_for_byte(string flag)
    {
        var data = new byte[5000];
        new Random(5).NextBytes(data);
        data[0] = 0;
        data[^1] = 0;
        var source = Path.Combine(_directory, "data.bin");
        await File.WriteAllBytesAsync(source, data, TestContext.Current.CancellationToken);

        var result = await LkrunAsync("metadata", "create", Iso, flag, source);

        Assert.Equal((0, ""), (result.ExitCode, result.Error));
        Assert.Equal(data, await ExtractAsync(Iso, "/config"));
        Assert.Equal(data, await ExtractAsync(Iso, "/user-data"));
    }

    [Fact]
    public async Task Data_file_may_be_a_pipe()
    {
        var result = await LkrunAsync(["metadata", "create", Iso, "-data-file", "/dev/stdin"], stdin: "from a pipe\0!"u8.ToArray());
        Assert.Equal((0, ""), (result.ExitCode, result.Error));
        Assert.Equal("from a pipe\0!"u8.ToArray(), await ExtractAsync(Iso, "/user-data"));
    }

    [Theory]
    [InlineData("missing the ISO file name", "metadata", "create")]
    [InlineData("missing the metadata", "metadata", "create", "ISO")]
    [InlineData("give the metadata or -data-file, not both", "metadata", "create", "ISO", "data", "-data-file", "ISO")]
    [InlineData("unexpected argument 'more'", "metadata", "create", "ISO", "data", "more")]
    [InlineData("-data-file needs a value", "metadata", "create", "ISO", "-data-file")]
    public async Task Usage_errors_are_one_line_with_exit_code_2_and_write_nothing(string message, params string[] arguments)
    {
        var result = await LkrunAsync(arguments.Select(a => a == "ISO" ? Iso : a).ToArray());
        Assert.Equal(2, result.ExitCode);
        Assert.Equal($"lkrun: {message}; see 'lkrun metadata create --help'\n", result.Error);
        Assert.Empty(Directory.GetFileSystemEntries(_directory));
    }

    [Fact]
    public async Task Unreadable_data_file_is_named_with_exit_code_1()
    {
        var missing = Path.Combine(_directory, "missing.txt");
        var result = await LkrunAsync("metadata", "create", Iso, "-data-file", missing);
        Assert.Equal((1, $"lkrun: -data-file {missing}: cannot read it (no such file)\n"), (result.ExitCode, result.Error));
        Assert.Empty(Directory.GetFileSystemEntries(_directory));
    }

    [Fact]
    public async Task Unwritable_image_path_is_named_with_exit_code_1()
    {
        var inMissingDirectory = Path.Combine(_directory, "missing", "data.iso");
        var result = await LkrunAsync("metadata", "create", inMissingDirectory, "x");
        Assert.Equal((1, $"lkrun: cannot write {inMissingDirectory}: no such directory\n"), (result.ExitCode, result.Error));

        var directory = Directory.CreateDirectory(Path.Combine(_directory, "taken")).FullName;
        result = await LkrunAsync("metadata", "create", directory, "x");
        Assert.Equal((1, $"lkrun: cannot write {directory}: it is a directory\n"), (result.ExitCode, result.Error));
        Assert.Empty(Directory.GetFileSystemEntries(directory));
        Assert.Equal(["taken"], Directory.GetFileSystemEntries(_directory).Select(Path.GetFileName));
    }

    private static string InstanceId(byte[] metaData)
    {
        var match = MetaDataLine().Match(Encoding.ASCII.GetString(metaData));
        Assert.True(match.Success, $"meta-data is '{Encoding.ASCII.GetString(metaData)}'");
        return match.Groups["id"].Value;
    }

    private static Task<(int ExitCode, string Output, string Error)> LkrunAsync(params string[] arguments) => LkrunAsync(arguments, stdin: []);

    private static async Task<(int ExitCode, string Output, string Error)> LkrunAsync(string[] arguments, byte[] stdin)
    {
        var result = await RunAsync(Path.Combine(AppContext.BaseDirectory, OperatingSystem.IsWindows() ? "lkrun.exe" : "lkrun"), arguments, stdin);
        return (result.ExitCode, Encoding.UTF8.GetString(result.Output), result.Error);
    }

    private static async Task<byte[]> ExtractAsync(string iso, string path)
    {
        var isoinfo = new[] { "/usr/bin/isoinfo", "/usr/local/bin/isoinfo", "/opt/homebrew/bin/isoinfo" }.FirstOrDefault(File.Exists)
            ?? throw new Xunit.Sdk.XunitException("isoinfo is not installed; these tests read the image with it (install the genisoimage package)");
        var result = await RunAsync(isoinfo, ["-i", iso, "-R", "-x", path], stdin: []);
        Assert.True(result.ExitCode == 0, result.Error);
        return result.Output;
    }

    private static async Task<(int ExitCode, byte[] Output, string Error)> RunAsync(string program, string[] arguments, byte[] stdin)
    {
        var start = new ProcessStartInfo(program) { RedirectStandardInput = true, RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var argument in arguments)
        {
            start.ArgumentList.Add(argument);
        }
        using var process = Process.Start(start)!;
        using var output = new MemoryStream();
        var cancellation = TestContext.Current.CancellationToken;
        await process.StandardInput.BaseStream.WriteAsync(stdin, cancellation);
        process.StandardInput.Close();
        var copyOutput = process.StandardOutput.BaseStream.CopyToAsync(output, cancellation);
        var readError = process.StandardError.ReadToEndAsync(cancellation);
        await Task.WhenAll(copyOutput, readError, process.WaitForExitAsync(cancellation));
        return (process.ExitCode, output.ToArray(), await readError);
    }

    [GeneratedRegex(@"\Ainstance-id: (?<id>[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\n\z")]
    private static partial Regex MetaDataLine();
}
