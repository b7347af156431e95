using System.CommandLine;
using System.Net.Sockets;
using Lkrun.Control;
using Lkrun.Services.Console;
using Lkrun.Services.State;

namespace Lkrun.Cli;

/// <summary>
/// <c>lkrun console NAME|STATE</c>: attaches this terminal to a running VM's console (raw mode, the console keys
/// of <c>lkrun run</c>, and Ctrl-A d to detach and leave the VM running). It shows the last screenful the console
/// printed, then what it prints. One terminal at a time: a second is refused with one line.
/// </summary>
public sealed class ConsoleAttachCommand
{
    /// <summary>How long the VM's lkrun gets to finish once the console has closed, before lkrun says what it knows.</summary>
    private static readonly TimeSpan EndingTimeout = TimeSpan.FromSeconds(30);

    private readonly Argument<string> _target = VmCommand.TargetArgument();

    public ConsoleAttachCommand()
    {
        Command = new Command("console", "Attach this terminal to a running VM's console; Ctrl-A d detaches, Ctrl-A h lists the keys");
        Command.Arguments.Add(_target);
        Command.SetAction((result, cancellation) => VmCommand.OnTargetAsync(result.GetValue(_target)!, target => AttachAsync(target, cancellation)));
    }

    public Command Command { get; }

    private static async Task<int> AttachAsync(VmTarget target, CancellationToken cancellation)
    {
        if (!StateDirectory.IsHeld(target.StateDirectory))
        {
            return VmCommand.Fail($"{target.Label} is not running; lkrun logs {target.Label} shows its console log", 1);
        }
        Socket? console;
        string? refusal;
        try
        {
            (console, refusal) = await ConsoleAttachClient.AttachAsync(target.Layout.ConsoleSocket, TerminalSession.Rows ?? 24, cancellation);
        }
        catch (SocketException e)
        {
            return VmCommand.Fail($"{target.Label}: cannot reach its console ({e.Message})", 1);
        }
        if (console is null)
        {
            return VmCommand.Fail($"{target.Label}: {refusal}", 1);
        }
        bool detached;
        using (console)
        {
            var interactive = TerminalSession.IsInteractive;
            VmLauncher.Notice($"attached to the console of {target.Label}; Ctrl-A d detaches, Ctrl-A h lists the keys");
            if (await PowerStateAsync(target, cancellation) is { } state and not "VirtualMachineStateRunning")
            {
                VmLauncher.Notice($"{target.Label} is {(state == "VirtualMachineStatePaused" ? "paused: its console is silent until it is resumed" : "stopping")}");
            }
            using (interactive ? TerminalSession.EnterRawMode() : null)
            {
                detached = await RelayAsync(console, cancellation);
            }
        }
        // The guest's last line (a prompt, say) has no end: lkrun's own line starts on the next.
        System.Console.Error.Write("\n");
        if (detached)
        {
            VmLauncher.Notice($"detached from {target.Label}; it keeps running");
            return 0;
        }
        // The console closed without a detach: the VM has ended, and its lkrun is about to say how.
        using var patience = CancellationTokenSource.CreateLinkedTokenSource(cancellation);
        patience.CancelAfter(EndingTimeout);
        try
        {
            await VmCommand.WaitUntilEndedAsync(target, patience.Token);
        }
        catch (OperationCanceledException)
        {
            return VmCommand.Fail($"{target.Label}: the console closed, and the VM has not ended", 1);
        }
        var (line, exitCode) = VmCommand.DescribeEnding(target);
        VmLauncher.Notice(line);
        return exitCode;
    }

    /// <summary>The VM's state as its control API says it (vfkit's names); null when it does not answer.</summary>
    private static async Task<string?> PowerStateAsync(VmTarget target, CancellationToken cancellation)
    {
        try
        {
            using var client = new ControlClient(target.Layout.ControlSocket, TimeSpan.FromSeconds(3));
            return (await client.GetStateAsync(cancellation)).State;
        }
        catch (Exception e) when (e is HttpRequestException or ControlException or TaskCanceledException or System.Text.Json.JsonException)
        {
            return null;
        }
    }

    /// <summary>
    /// Copies the console to stdout and the keyboard to the console until the console closes or the user detaches;
    /// true for a detach. The keys are watched with the relay's own escape-key rules, so both sides agree on when
    /// Ctrl-A d was typed; stdin closing counts as a detach too.
    /// </summary>
    private static async Task<bool> RelayAsync(Socket console, CancellationToken cancellation)
    {
        var detach = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var input = TerminalSession.OpenStandardInput();
        new Thread(() => ReadKeys(input, console, detach)) { IsBackground = true, Name = "console keys" }.Start();
        var output = TerminalSession.OpenStandardOutput();
        var printing = PrintAsync(console, output, cancellation);
        var first = await Task.WhenAny(printing, detach.Task);
        if (first == detach.Task)
        {
            // What the relay sent before it saw the detach may still be in flight; it closes its side at once.
            await Task.WhenAny(printing, Task.Delay(TimeSpan.FromSeconds(1), CancellationToken.None));
            return true;
        }
        return detach.Task.IsCompleted;
    }

    private static async Task PrintAsync(Socket console, Stream output, CancellationToken cancellation)
    {
        var buffer = new byte[16 * 1024];
        try
        {
            int read;
            while ((read = await console.ReceiveAsync(buffer, SocketFlags.None, cancellation)) > 0)
            {
                await output.WriteAsync(buffer.AsMemory(0, read), cancellation);
            }
        }
        catch (Exception e) when (e is SocketException or IOException or OperationCanceledException)
        {
            // The console or the terminal went away.
        }
    }

    private static void ReadKeys(Stream input, Socket console, TaskCompletionSource detach)
    {
        var keys = new EscapeKeys(detachable: true);
        var typed = new byte[1024];
        var ignored = new byte[typed.Length * 2];
        try
        {
            int read;
            while ((read = input.Read(typed)) > 0)
            {
                // The detach is noted before the keys go out: the relay closes the console the moment it sees
                // Ctrl-A d, and that close must already read as a detach here, not as the VM ending.
                keys.Filter(typed.AsSpan(0, read), ignored, command =>
                {
                    if (command == ConsoleCommand.Detach)
                    {
                        detach.TrySetResult();
                    }
                });
                console.Send(typed.AsSpan(0, read));
                if (detach.Task.IsCompleted)
                {
                    return;
                }
            }
            detach.TrySetResult();
        }
        catch (Exception e) when (e is IOException or SocketException or ObjectDisposedException)
        {
            // The console closed while a key was on its way.
        }
    }
}
