using System.Diagnostics;

namespace Lkrun.Engines.Qemu;

/// <summary>
/// The QEMU child process. It runs in its own session, so a Ctrl-C meant for lkrun never reaches it, and with a
/// parent-death signal, so it dies with lkrun even when lkrun is killed with SIGKILL. Its output goes to a log file
/// in the state dir, and the last lines are kept for the error message if it crashes.
/// </summary>
public sealed class QemuProcess
{
    private const int KeptLines = 12;

    private readonly Queue<string> _lastLines = new();
    private readonly TaskCompletionSource<int> _exited = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly StreamWriter _log;
    private Process? _process;

    private QemuProcess(string logPath)
    {
        _log = new StreamWriter(logPath, append: false) { AutoFlush = true };
    }

    /// <summary>The exit code, or 128 + signal number when QEMU was killed by a signal.</summary>
    public Task<int> Exited => _exited.Task;

    /// <summary>
    /// Starts QEMU. The parent-death signal fires when the thread that forked the child exits, not the process,
    /// so the child is forked from a dedicated thread that lives exactly as long as QEMU does.
    /// </summary>
    public static QemuProcess Start(string binary, IReadOnlyList<string> args, string logPath)
    {
        var qemu = new QemuProcess(logPath);
        var started = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var thread = new Thread(() => qemu.RunUntilExit(binary, args, started)) { IsBackground = true, Name = "qemu" };
        thread.Start();
        started.Task.GetAwaiter().GetResult();
        return qemu;
    }

    public IReadOnlyList<string> LastLines()
    {
        lock (_lastLines)
        {
            return [.. _lastLines];
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

    private void RunUntilExit(string binary, IReadOnlyList<string> args, TaskCompletionSource started)
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
            _log.Dispose();
            _exited.SetResult(code);
        }
        catch (Exception e)
        {
            _log.Dispose();
            if (!started.TrySetException(new EngineException($"cannot start {binary}: {e.Message}")))
            {
                _exited.TrySetException(e);
            }
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
            while (_lastLines.Count > KeptLines)
            {
                _lastLines.Dequeue();
            }
        }
    }
}
