using System.Diagnostics;

namespace Lkrun.Services.Processes;

/// <summary>
/// A helper program lkrun runs for one VM (QEMU, virtiofsd). It runs in its own session, so a Ctrl-C meant for
/// lkrun never reaches it, and with a parent-death signal, so it dies with lkrun even when lkrun is killed with
/// SIGKILL. What it prints goes to a log file in the state dir; the last lines are kept for an error message.
/// </summary>
public sealed class ChildProcess
{
    private readonly int _keptLines;
    private readonly string? _readyLine;
    private readonly Queue<string> _lastLines = new();
    private readonly TaskCompletionSource<int> _exited = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly TaskCompletionSource _ready = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly StreamWriter _log;
    private Process? _process;

    private ChildProcess(string logPath, int keptLines, string? readyLine)
    {
        _log = new StreamWriter(logPath, append: false) { AutoFlush = true };
        _keptLines = keptLines;
        _readyLine = readyLine;
    }

    /// <summary>The exit code, or 128 + signal number when it was killed by a signal.</summary>
    public Task<int> Exited => _exited.Task;

    /// <summary>Completes once the program has printed the ready line it was started with.</summary>
    public Task Ready => _ready.Task;

    /// <summary>
    /// Starts <paramref name="binary"/>. Descriptors without close-on-exec are inherited (how a listening socket
    /// reaches virtiofsd). The parent-death signal fires when the thread that forked the child exits, not the
    /// process, so the child is forked from a thread that lives exactly as long as it does. When it cannot start,
    /// throws what <paramref name="cannotStart"/> makes of the reason. <paramref name="readyLine"/>, when given, is
    /// what the program prints once it is ready (<see cref="Ready"/>).
    /// </summary>
    public static ChildProcess Start(
        string binary, IReadOnlyList<string> args, string logPath, int keptLines, Func<string, Exception> cannotStart, string? readyLine = null)
    {
        var child = new ChildProcess(logPath, keptLines, readyLine);
        var started = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var thread = new Thread(() => child.RunUntilExit(binary, args, started, cannotStart)) { IsBackground = true, Name = Path.GetFileName(binary) };
        thread.Start();
        started.Task.GetAwaiter().GetResult();
        return child;
    }

    /// <summary><paramref name="what"/> happened, with the last lines the program printed.</summary>
    public string Describe(string what)
    {
        lock (_lastLines)
        {
            return _lastLines.Count == 0 ? what : $"{what}; it said: {string.Join(" | ", _lastLines)}";
        }
    }

    public void Kill()
    {
        try
        {
            _process?.Kill();
        }
        catch (InvalidOperationException)
        {
            // Already exited.
        }
    }

    private void RunUntilExit(string binary, IReadOnlyList<string> args, TaskCompletionSource started, Func<string, Exception> cannotStart)
    {
        var startInfo = new ProcessStartInfo("setsid")
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var arg in (string[])["setpriv", "--pdeathsig", "KILL", "--", binary, .. args])
        {
            startInfo.ArgumentList.Add(arg);
        }
        try
        {
            var process = new Process { StartInfo = startInfo };
            process.OutputDataReceived += (_, e) => Record(e.Data);
            process.ErrorDataReceived += (_, e) => Record(e.Data);
            process.Start();
            process.StandardInput.Close();
            process.BeginOutputReadLine();
            process.BeginErrorReadLine();
            _process = process;
            started.SetResult();
            process.WaitForExit();
            var code = process.ExitCode;
            CloseLog();
            _exited.SetResult(code);
        }
        catch (Exception e)
        {
            CloseLog();
            if (!started.TrySetException(cannotStart(e.Message)))
            {
                _exited.TrySetException(e);
            }
        }
    }

    private void CloseLog()
    {
        lock (_lastLines)
        {
            _log.Dispose();
        }
    }

    private void Record(string? line)
    {
        if (line is null)
        {
            return;
        }
        lock (_lastLines)
        {
            _log.WriteLine(line);
            _lastLines.Enqueue(line);
            while (_lastLines.Count > _keptLines)
            {
                _lastLines.Dequeue();
            }
        }
        if (_readyLine is not null && line.Contains(_readyLine, StringComparison.Ordinal))
        {
            _ready.TrySetResult();
        }
    }
}
