using System.Diagnostics;
using System.Text;

namespace Lkrun.Integration.Tests.Infrastructure;

/// <summary>What one lkrun command printed, and how it ended.</summary>
public sealed record CommandResult(int ExitCode, string Output, string Error)
{
    /// <summary>stderr as lines, for "exactly one line" checks.</summary>
    public IReadOnlyList<string> ErrorLines => Error.TrimEnd('\n').Split('\n');
}

/// <summary>
/// lkrun's commands other than a foreground <c>run</c> (<c>run --detach</c>, <c>ps</c>, <c>stop</c>, ...), run to
/// their end with one per-test registry (<c>XDG_STATE_HOME</c> in the test's scratch dir). VMs started with
/// <c>--detach</c> outlive their command: <see cref="DisposeAsync"/> kills every lkrun still holding one of the
/// state dirs the test used, and QEMU dies with it.
/// </summary>
public sealed class LkrunCli(Scratch scratch) : IAsyncDisposable
{
    private readonly List<string> _stateDirectories = [];

    public string StateHome => scratch["xdg-state"];

    /// <summary><c>lkrun run --detach -state STATE [args] prefix</c>.</summary>
    public Task<CommandResult> RunDetachedAsync(string stateDirectory, IEnumerable<string> args, string prefix)
    {
        _stateDirectories.Add(stateDirectory);
        return RunAsync(["run", "--detach", "-state", stateDirectory, .. args, prefix], LkrunProcess.BootTimeout);
    }

    /// <summary>Runs <c>lkrun args</c> to its end.</summary>
    public async Task<CommandResult> RunAsync(IReadOnlyList<string> args, TimeSpan? timeout = null)
    {
        var startInfo = new ProcessStartInfo(Repository.LkrunBinary)
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var arg in args)
        {
            startInfo.ArgumentList.Add(arg);
        }
        startInfo.Environment["XDG_STATE_HOME"] = StateHome;
        using var process = Process.Start(startInfo)!;
        process.StandardInput.Close();
        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEndAsync();
        using var cancellation = new CancellationTokenSource(timeout ?? TimeSpan.FromSeconds(60));
        try
        {
            await process.WaitForExitAsync(cancellation.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            Assert.Fail($"lkrun {string.Join(' ', args)} did not end in time.\nstdout:\n{await output}\nstderr:\n{await error}");
        }
        return new CommandResult(process.ExitCode, await output, await error);
    }

    /// <summary>Runs a shell command line with this test's registry, to its end.</summary>
    public async Task<CommandResult> ShellAsync(string command)
    {
        var startInfo = new ProcessStartInfo("bash", ["-c", command])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        startInfo.Environment["XDG_STATE_HOME"] = StateHome;
        using var process = Process.Start(startInfo)!;
        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEndAsync();
        using var cancellation = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        await process.WaitForExitAsync(cancellation.Token);
        return new CommandResult(process.ExitCode, await output, await error);
    }

    /// <summary>The pid of the lkrun that runs the VM of <paramref name="stateDirectory"/>.</summary>
    public static int RunnerPid(string stateDirectory) =>
        int.Parse(File.ReadAllText(Path.Combine(stateDirectory, "lkrun.pid")).Trim());

    /// <summary>Environment for a process that must find this test's registry, as <see cref="LkrunProcess"/> takes it.</summary>
    public IDictionary<string, string> Environment => new Dictionary<string, string> { ["XDG_STATE_HOME"] = StateHome };

    public async ValueTask DisposeAsync()
    {
        foreach (var stateDirectory in _stateDirectories)
        {
            var pidFile = Path.Combine(stateDirectory, "lkrun.pid");
            if (!File.Exists(pidFile) || !int.TryParse(File.ReadAllText(pidFile).Trim(), out var pid) || !Posix.IsAlive(pid))
            {
                continue;
            }
            var cmdline = Encoding.UTF8.GetString(await File.ReadAllBytesAsync($"/proc/{pid}/cmdline"));
            if (cmdline.Contains(stateDirectory, StringComparison.Ordinal))
            {
                Posix.Signal(pid, Posix.SIGKILL);
                await LkrunProcess.WaitUntilAsync(() => !Posix.IsAlive(pid), TimeSpan.FromSeconds(10), "a detached lkrun to die");
            }
        }
    }
}
