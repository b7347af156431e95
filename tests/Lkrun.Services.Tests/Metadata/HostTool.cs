using System.Diagnostics;

namespace Lkrun.Services.Tests.Metadata;

/// <summary>Runs a reader installed on the host. A missing tool fails the test, naming the package to install.</summary>
internal static class HostTool
{
    public sealed record Result(int ExitCode, byte[] Output, string Error)
    {
        public string Text => System.Text.Encoding.UTF8.GetString(Output);
    }

    public static async Task<Result> RunAsync(string tool, string package, params string[] arguments)
    {
        var path = Find(tool) ?? throw new Xunit.Sdk.XunitException(
            $"{tool} is not installed; these tests read the image with it (install the {package} package)");
        var start = new ProcessStartInfo(path)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var argument in arguments)
        {
            start.ArgumentList.Add(argument);
        }
        using var process = Process.Start(start)!;
        using var output = new MemoryStream();
        var cancellation = TestContext.Current.CancellationToken;
        var copyOutput = process.StandardOutput.BaseStream.CopyToAsync(output, cancellation);
        var readError = process.StandardError.ReadToEndAsync(cancellation);
        await Task.WhenAll(copyOutput, readError, process.WaitForExitAsync(cancellation));
        return new Result(process.ExitCode, output.ToArray(), await readError);
    }

    /// <summary>Runs the tool and fails the test, with its error output, unless it exits with 0.</summary>
    public static async Task<Result> RunCheckedAsync(string tool, string package, params string[] arguments)
    {
        var result = await RunAsync(tool, package, arguments);
        Assert.True(result.ExitCode == 0, $"{tool} {string.Join(' ', arguments)} exited with {result.ExitCode}: {result.Error}");
        return result;
    }

    // blkid and friends live in /usr/sbin, which a non-root PATH may lack.
    private static string? Find(string tool) =>
        $"{Environment.GetEnvironmentVariable("PATH")}:/usr/sbin:/sbin"
            .Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries)
            .Select(directory => Path.Combine(directory, tool))
            .FirstOrDefault(File.Exists);
}
