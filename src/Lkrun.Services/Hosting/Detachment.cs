using Lkrun.Services.Interop;
using Microsoft.Win32.SafeHandles;

namespace Lkrun.Services.Hosting;

/// <summary>
/// What an lkrun that runs its VM in the background does to its own process: it leaves the terminal's session, so
/// the terminal's hang-up and Ctrl-C never reach it, reads nothing, and once its command has returned writes what
/// it has to say to a log.
/// </summary>
public static class Detachment
{
    private const int StandardInput = 0;
    private const int StandardOutput = 1;
    private const int StandardError = 2;
    private const int SignalTerminate = 15;

    /// <summary>Starts a session of its own, without a controlling terminal, and reads stdin from /dev/null.</summary>
    public static void LeaveTerminal()
    {
        // Fails only for a process group leader, which a freshly started child is not.
        LibC.setsid();
        using var devNull = File.OpenHandle("/dev/null", FileMode.Open, FileAccess.Read);
        Redirect(devNull, StandardInput);
    }

    /// <summary>
    /// Hands over to the log: stderr goes to <paramref name="log"/> (opened for appending), then
    /// <paramref name="report"/> goes out as the last line on stdout, then stdout goes to the log too. The command
    /// that waits on both pipes sees stderr end before the report arrives, so it has relayed every line by then.
    /// </summary>
    public static void HandOver(string log, string report)
    {
        using var file = File.OpenHandle(log, FileMode.Append, FileAccess.Write);
        Redirect(file, StandardError);
        using (var stdout = new FileStream(new SafeFileHandle(StandardOutput, ownsHandle: false), FileAccess.Write, bufferSize: 0))
        {
            try
            {
                stdout.Write(System.Text.Encoding.UTF8.GetBytes(report + "\n"));
            }
            catch (IOException)
            {
                // The command that waited is gone (killed); the VM runs on all the same.
            }
        }
        Redirect(file, StandardOutput);
    }

    /// <summary>
    /// Makes <see cref="System.Console.Out"/> and <see cref="System.Console.Error"/> write to fds 1 and 2
    /// themselves. .NET's own console writers hold duplicates of them, which would keep the waiting command's pipes
    /// open after <see cref="HandOver"/> (and take lkrun's lines there); so this must come before anything writes.
    /// </summary>
    public static void WriteConsoleToStandardDescriptors()
    {
        System.Console.SetOut(DirectWriter(StandardOutput));
        System.Console.SetError(DirectWriter(StandardError));
    }

    private static TextWriter DirectWriter(int fd) =>
        TextWriter.Synchronized(new StreamWriter(new FileStream(new SafeFileHandle(fd, ownsHandle: false), FileAccess.Write, bufferSize: 0)) { AutoFlush = true });

    /// <summary>Asks process <paramref name="pid"/> to stop, as <c>kill</c> does; false when it is gone.</summary>
    public static bool Terminate(int pid) => LibC.kill(pid, SignalTerminate) == 0;

    private static void Redirect(SafeFileHandle file, int target)
    {
        var added = false;
        file.DangerousAddRef(ref added);
        try
        {
            LibC.Check(LibC.dup2((int)file.DangerousGetHandle(), target), "dup2");
        }
        finally
        {
            if (added)
            {
                file.DangerousRelease();
            }
        }
    }
}
