using System.Diagnostics;

namespace Lkrun.Services.Virtiofs;

/// <summary>
/// One virtiofsd child, supervised as QEMU is: in its own session, so a Ctrl-C meant for lkrun never reaches it,
/// and with a parent-death signal, so it dies with lkrun even when lkrun is killed with SIGKILL (virtiofsd's own
/// sandboxed child gets SIGTERM when it dies). What it prints goes to a log file; the last lines are kept for
/// the error message.
/// </summary>
internal sealed class VirtiofsdProcess
{
    /// <summary>What virtiofsd prints once it has parsed its options and waits for QEMU on the socket.</summary>
    private const string ReadyLine = "Waiting for vhost-user socket connection";

    private const int KeptLines = 4;

    private readonly Queue<string> _lastLines = new();
    private readonly TaskCompletionSource<int> _exited = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly TaskCompletionSource _ready = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly StreamWriter _log;
    private Process? _process;

    private VirtiofsdProcess(string logPath)
    {
        _log = new StreamWriter(logPath, append: false) { AutoFlush = true };
    }

    /// <summary>The exit code, or 128 + signal number when it was killed by a signal.</summary>
    public Task<int> Exited => _exited.Task;

    /// <summary>Completes once virtiofsd waits for QEMU's connection.</summary>
    public Task Ready => _ready.Task;

    /// <summary>
    /// Starts <paramref name="argv"/>. Descriptors without close-on-exec are inherited, which is how the listening
    /// socket reaches virtiofsd. The parent-death signal fires when the thread that forked the child exits, so the
    /// child is forked from a thread that lives exactly as long as it does.
    /// </summary>
    public static VirtiofsdProcess Start(IReadOnlyList<string> argv, string logPath)
    {
        var child = new VirtiofsdProcess(logPath);
        var started = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var thread = new Thread(() => child.RunUntilExit(argv, started)) { IsBackground = true, Name = "virtiofsd" };
        thread.Start();
        started.Task.GetAwaiter().GetResult();
        return child;
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

    private void RunUntilExit(IReadOnlyList<string> argv, TaskCompletionSource started)
    {
        var startInfo = new ProcessStartInfo("setsid")
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var arg in (string[])["setpriv", "--pdeathsig", "KILL", "--", .. argv])
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
            lock (_lastLines)
            {
                _log.Dispose();
            }
            _exited.SetResult(code);
        }
        catch (Exception e)
        {
            lock (_lastLines)
            {
                _log.Dispose();
            }
            if (!started.TrySetException(new VirtiofsException($"cannot start virtiofsd: {e.Message}")))
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
        if (line.Contains(ReadyLine, StringComparison.Ordinal))
        {
            _ready.TrySetResult();
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
