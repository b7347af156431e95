using Lkrun.Services.Interop;
using Microsoft.Win32.SafeHandles;

namespace Lkrun.Services.Console;

/// <summary>
/// Puts the user's terminal into raw mode for an interactive console and restores it exactly once, whichever way
/// lkrun leaves (normal return, exception, or process exit).
/// </summary>
public sealed class TerminalSession : IDisposable
{
    private const int StandardInput = 0;
    private const int StandardOutput = 1;

    private readonly byte[] _saved;
    private int _restored;

    private TerminalSession(byte[] saved)
    {
        _saved = saved;
        AppDomain.CurrentDomain.ProcessExit += OnProcessExit;
    }

    private static int s_rawSessions;

    /// <summary>True while a session holds the terminal in raw mode.</summary>
    public static bool IsRaw => Volatile.Read(ref s_rawSessions) > 0;

    /// <summary>The console is interactive only when both stdin and stdout are terminals.</summary>
    public static bool IsInteractive => TerminalMode.IsTerminal(StandardInput) && TerminalMode.IsTerminal(StandardOutput);

    /// <summary>The height of the terminal on stdout, in rows; null when stdout is not a terminal.</summary>
    public static int? Rows => TerminalMode.Rows(StandardOutput);

    /// <summary>
    /// stdin and stdout as plain file streams. .NET's console streams switch the terminal's mode around each read
    /// and would undo raw mode, so an interactive console must not go through them.
    /// </summary>
    public static Stream OpenStandardInput() => new FileStream(new SafeFileHandle(StandardInput, ownsHandle: false), FileAccess.Read, bufferSize: 0);

    public static Stream OpenStandardOutput() => new FileStream(new SafeFileHandle(StandardOutput, ownsHandle: false), FileAccess.Write, bufferSize: 0);

    public static TerminalSession EnterRawMode()
    {
        var saved = TerminalMode.Save(StandardInput) ?? throw new IOException("stdin is not a terminal");
        var session = new TerminalSession(saved);
        TerminalMode.MakeRaw(StandardInput, saved);
        Interlocked.Increment(ref s_rawSessions);
        return session;
    }

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _restored, 1) == 0)
        {
            TerminalMode.Restore(StandardInput, _saved);
            Interlocked.Decrement(ref s_rawSessions);
            AppDomain.CurrentDomain.ProcessExit -= OnProcessExit;
        }
    }

    private void OnProcessExit(object? sender, EventArgs e) => Dispose();
}
