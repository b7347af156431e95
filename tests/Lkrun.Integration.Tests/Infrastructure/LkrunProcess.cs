using System.Diagnostics;
using System.Text;
using System.Text.RegularExpressions;

namespace Lkrun.Integration.Tests.Infrastructure;

/// <summary>
/// lkrun started as a user would start it. With <c>terminal: true</c> it runs under a pseudo-terminal (through
/// util-linux's <c>script</c>), so its console is interactive; otherwise stdin and stdout are pipes.
/// </summary>
public sealed class LkrunProcess : IAsyncDisposable
{
    /// <summary>Generous, because guests boot under software emulation on a busy machine.</summary>
    public static readonly TimeSpan BootTimeout = TimeSpan.FromSeconds(120);

    private readonly Process _process;
    private readonly StringBuilder _output = new();
    private readonly StringBuilder _error = new();
    private readonly object _gate = new();
    private readonly string _stateDirectory;
    private readonly bool _terminal;
    private int _commandNumber;
    private Task _pumps = Task.CompletedTask;

    private LkrunProcess(Process process, string stateDirectory, bool terminal)
    {
        _process = process;
        _stateDirectory = stateDirectory;
        _terminal = terminal;
    }

    /// <summary>What lkrun wrote to stdout (the guest console), without carriage returns.</summary>
    public string Output
    {
        get
        {
            lock (_gate)
            {
                return _output.ToString();
            }
        }
    }

    /// <summary>What lkrun wrote to stderr (under a terminal, stderr shares the terminal with stdout).</summary>
    public string Error
    {
        get
        {
            lock (_gate)
            {
                return _terminal ? _output.ToString() : _error.ToString();
            }
        }
    }

    public string StateDirectory => _stateDirectory;

    /// <summary>The pid of the process started: lkrun itself unless it runs under a terminal or a shell.</summary>
    public int ProcessId => _process.Id;

    /// <summary>The XDG_CACHE_HOME of every lkrun the tests start: lkrun keeps its kernels in <c>lkrun/kernels</c> below it.</summary>
    public static string KernelCacheHome { get; } = Path.Combine(AppContext.BaseDirectory, "xdg-cache");

    /// <summary>
    /// Starts <c>lkrun run [args] prefix</c> with <c>-state stateDirectory</c>. <paramref name="environment"/>
    /// adds to lkrun's environment.
    /// </summary>
    public static LkrunProcess Run(string stateDirectory, IEnumerable<string> args, string prefix, bool terminal = false, IDictionary<string, string>? environment = null)
    {
        string[] lkrunArgs = ["run", "-state", stateDirectory, .. args, prefix];
        return Start(lkrunArgs, stateDirectory, terminal, environment);
    }

    public static LkrunProcess Start(IReadOnlyList<string> lkrunArgs, string stateDirectory, bool terminal = false, IDictionary<string, string>? environment = null)
    {
        if (terminal)
        {
            return StartInTerminal(LkrunCommand(lkrunArgs), stateDirectory, environment);
        }
        return Launch(new ProcessStartInfo(Repository.LkrunBinary, lkrunArgs), stateDirectory, terminal: false, environment);
    }

    /// <summary>Runs a shell command line under a pseudo-terminal; <see cref="LkrunCommand"/> quotes an lkrun call for it.</summary>
    public static LkrunProcess StartInTerminal(string shellCommand, string stateDirectory, IDictionary<string, string>? environment = null) =>
        Launch(new ProcessStartInfo("script", ["--quiet", "--flush", "--return", "--command", shellCommand, "/dev/null"]), stateDirectory, terminal: true, environment);

    /// <summary>Runs a shell command line with pipes for its standard streams (a pipeline around an lkrun call).</summary>
    public static LkrunProcess StartInShell(string shellCommand, string stateDirectory) =>
        Launch(new ProcessStartInfo("bash", ["-c", shellCommand]), stateDirectory, terminal: false, environment: null);

    public static string LkrunCommand(IEnumerable<string> lkrunArgs) =>
        string.Join(' ', new[] { Repository.LkrunBinary }.Concat(lkrunArgs).Select(ShellQuote));

    private static LkrunProcess Launch(ProcessStartInfo startInfo, string stateDirectory, bool terminal, IDictionary<string, string>? environment)
    {
        // A test run started as an async command of a script inherits SIGINT and SIGQUIT ignored, and every program keeps
        // an inherited ignore; start each child as a user's shell would, with those signals at their defaults.
        startInfo.ArgumentList.Insert(0, startInfo.FileName);
        startInfo.ArgumentList.Insert(0, "--default-signal=INT,QUIT");
        startInfo.FileName = "env";
        startInfo.RedirectStandardInput = true;
        startInfo.RedirectStandardOutput = true;
        startInfo.RedirectStandardError = true;
        startInfo.UseShellExecute = false;
        // The network lease registry lives under XDG_STATE_HOME: keep it beside the test's state dir, never the user's.
        startInfo.Environment["XDG_STATE_HOME"] = Path.Combine(Path.GetDirectoryName(stateDirectory)!, "xdg-state");
        // The decompressed kernels are shared by every test's lkrun, as a user's VMs share them, but not with the user.
        startInfo.Environment["XDG_CACHE_HOME"] = KernelCacheHome;
        foreach (var (name, value) in environment ?? new Dictionary<string, string>())
        {
            startInfo.Environment[name] = value;
        }
        var process = new Process { StartInfo = startInfo };
        var lkrun = new LkrunProcess(process, stateDirectory, terminal);
        process.Start();
        lkrun._pumps = Task.WhenAll(
            lkrun.PumpAsync(process.StandardOutput.BaseStream, lkrun._output),
            lkrun.PumpAsync(process.StandardError.BaseStream, lkrun._error));
        return lkrun;
    }

    /// <summary>lkrun's own pid, read from the state dir (under a terminal the child of this process is <c>script</c>).</summary>
    public async Task<int> LkrunPidAsync()
    {
        var pidFile = Path.Combine(_stateDirectory, "lkrun.pid");
        await WaitUntilAsync(() => File.Exists(pidFile) && File.ReadAllText(pidFile).EndsWith('\n'), BootTimeout, "lkrun.pid to appear");
        return int.Parse(File.ReadAllText(pidFile).Trim());
    }

    /// <summary>QEMU's pid from its pid file in the state dir.</summary>
    public async Task<int> QemuPidAsync()
    {
        var pidFile = Path.Combine(_stateDirectory, "qemu.pid");
        await WaitUntilAsync(() => File.Exists(pidFile) && File.ReadAllText(pidFile).Trim().Length > 0, BootTimeout, "qemu.pid to appear");
        return int.Parse(File.ReadAllText(pidFile).Trim());
    }

    public async Task SignalAsync(int signal) => Posix.Signal(await LkrunPidAsync(), signal);

    /// <summary>Waits for a console line matching <paramref name="pattern"/> and returns its match.</summary>
    public async Task<Match> WaitForOutputAsync(string pattern, TimeSpan? timeout = null) =>
        await WaitForAsync(() => Output, pattern, timeout ?? BootTimeout, "stdout");

    public async Task<Match> WaitForErrorAsync(string pattern, TimeSpan? timeout = null) =>
        await WaitForAsync(() => Error, pattern, timeout ?? BootTimeout, "stderr");

    public Task<Match> WaitForReadyAsync() => WaitForOutputAsync("lkrun-guest: ready");

    /// <summary>Types <paramref name="keys"/> on lkrun's stdin (its terminal, when it has one).</summary>
    public async Task TypeAsync(string keys)
    {
        await _process.StandardInput.WriteAsync(keys);
        await _process.StandardInput.FlushAsync();
    }

    /// <summary>
    /// Runs a shell command on the guest's console (the test guest's interactive shell on lkrun's terminal); returns
    /// what it printed and its exit status.
    /// </summary>
    public async Task<(string Output, int Status)> RunOnConsoleAsync(string command, TimeSpan timeout)
    {
        var number = Interlocked.Increment(ref _commandNumber);
        var start = Output.Length;
        // The markers are spelt differently in the echoed command line than in the output they produce.
        var begin = $"__begin_{number}__\n";
        var end = $"__end_{number}__ ";
        // One line, so that nothing is typed ahead of the command.
        await TypeAsync($"echo \"__begin_\"\"{number}__\"; {command}; echo \"__end_\"\"{number}__ $?\"\r");
        await WaitForOutputAsync($"__end_{number}__ \\d+\n", timeout);
        var text = Output[start..];
        var outputStart = text.IndexOf(begin, StringComparison.Ordinal) + begin.Length;
        var outputEnd = text.IndexOf(end, StringComparison.Ordinal);
        var statusText = text[(outputEnd + end.Length)..];
        return (text[outputStart..outputEnd], int.Parse(statusText[..statusText.IndexOf('\n')].Trim()));
    }

    public async Task<int> WaitForExitAsync(TimeSpan? timeout = null)
    {
        using var cancellation = new CancellationTokenSource(timeout ?? BootTimeout);
        try
        {
            await _process.WaitForExitAsync(cancellation.Token);
            // What the process wrote just before it exited may still be in the pipes.
            await _pumps.WaitAsync(cancellation.Token);
        }
        catch (OperationCanceledException)
        {
            Assert.Fail($"lkrun did not exit in time.\nstdout:\n{Output}\nstderr:\n{Error}");
        }
        return _process.ExitCode;
    }

    public async ValueTask DisposeAsync()
    {
        if (!_process.HasExited)
        {
            // Tests that end early still stop their VM: lkrun's parent-death signal takes QEMU with it.
            try
            {
                Posix.Signal(await LkrunPidAsync(), Posix.SIGKILL);
            }
            catch (Exception)
            {
                _process.Kill(entireProcessTree: true);
            }
            await _process.WaitForExitAsync();
        }
        _process.Dispose();
    }

    public static async Task WaitUntilAsync(Func<bool> condition, TimeSpan timeout, string what)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (!condition())
        {
            if (DateTime.UtcNow > deadline)
            {
                Assert.Fail($"timed out waiting for {what}");
            }
            await Task.Delay(50);
        }
    }

    private async Task<Match> WaitForAsync(Func<string> text, string pattern, TimeSpan timeout, string stream)
    {
        var regex = new Regex(pattern, RegexOptions.Multiline);
        var deadline = DateTime.UtcNow + timeout;
        while (true)
        {
            var match = regex.Match(text());
            if (match.Success)
            {
                return match;
            }
            if (_process.HasExited)
            {
                await Task.Delay(200);
                match = regex.Match(text());
                if (match.Success)
                {
                    return match;
                }
                Assert.Fail($"lkrun exited ({_process.ExitCode}) before '{pattern}' appeared on {stream}.\nstdout:\n{Output}\nstderr:\n{Error}");
            }
            if (DateTime.UtcNow > deadline)
            {
                Assert.Fail($"'{pattern}' did not appear on {stream} within {timeout.TotalSeconds} s.\nstdout:\n{Output}\nstderr:\n{Error}");
            }
            await Task.Delay(50);
        }
    }

    private async Task PumpAsync(Stream stream, StringBuilder sink)
    {
        var buffer = new byte[8192];
        int read;
        while ((read = await stream.ReadAsync(buffer)) > 0)
        {
            // Carriage returns are dropped, not paired with line feeds: a CR LF can be split between two reads.
            var text = Encoding.UTF8.GetString(buffer, 0, read).Replace("\r", "", StringComparison.Ordinal);
            lock (_gate)
            {
                sink.Append(text);
            }
        }
    }

    private static string ShellQuote(string arg) => "'" + arg.Replace("'", "'\\''", StringComparison.Ordinal) + "'";
}
