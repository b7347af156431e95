using System.CommandLine;
using System.Globalization;
using System.Net.Sockets;
using Lkrun.Control;
using Lkrun.Services.State;

namespace Lkrun.Cli;

/// <summary>
/// <c>lkrun stop NAME|STATE [--timeout S] [--force]</c>: asks the VM's lkrun, over its control API, for a clean
/// stop (the power button, pressed until the guest powers off or the timeout ends, then a hard stop) or, with
/// <c>--force</c>, a hard stop; waits until the VM has ended and says how, with its lkrun's exit code.
/// </summary>
public sealed class StopCommand
{
    private readonly Argument<string> _target = VmCommand.TargetArgument();
    private readonly Option<string?> _timeout = VmCommand.Flag<string?>("timeout", "Seconds the guest has to power off before it is stopped hard (default: the VM's -stop-timeout)", "SECONDS");
    private readonly Option<bool> _force = VmCommand.Flag<bool>("force", "Stop the VM at once, as pulling the plug would");

    public StopCommand()
    {
        Command = new Command("stop", "Stop a running VM: a clean ACPI shutdown, then a hard stop after the timeout");
        Command.Arguments.Add(_target);
        Command.Options.Add(_timeout);
        Command.Options.Add(_force);
        Command.SetAction((result, cancellation) =>
            StopAsync(result.GetValue(_target)!, result.GetValue(_timeout), result.GetValue(_force), cancellation));
    }

    public Command Command { get; }

    private static async Task<int> StopAsync(string nameOrState, string? timeoutText, bool force, CancellationToken cancellation)
    {
        double? timeout = null;
        if (timeoutText is not null)
        {
            if (!double.TryParse(timeoutText.TrimEnd('s'), NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out var seconds) || seconds <= 0)
            {
                return VmCommand.Fail($"--timeout {timeoutText}: not a positive number of seconds", 2);
            }
            timeout = seconds;
        }
        return await VmCommand.OnTargetAsync(nameOrState, async target =>
        {
            if (!StateDirectory.IsHeld(target.StateDirectory))
            {
                VmLauncher.Notice($"{target.Label} is not running");
                return 0;
            }
            if (await RequestAsync(target, force ? "HardStop" : "Stop", timeout, cancellation) is { } refused)
            {
                return VmCommand.Fail($"{target.Label}: {refused}", 1);
            }
            await VmCommand.WaitUntilEndedAsync(target, cancellation);
            var (line, exitCode) = VmCommand.DescribeEnding(target);
            VmLauncher.Notice(line);
            return exitCode;
        });
    }

    /// <summary>
    /// Sends the request once the control API answers: a VM still starting opens it in a moment. Null when sent,
    /// or when the VM ended meanwhile; otherwise why it was refused.
    /// </summary>
    private static async Task<string?> RequestAsync(VmTarget target, string state, double? timeout, CancellationToken cancellation)
    {
        using var client = new ControlClient(target.Layout.ControlSocket);
        while (StateDirectory.IsHeld(target.StateDirectory))
        {
            try
            {
                await client.ChangeStateAsync(state, timeout, cancellation);
                return null;
            }
            catch (HttpRequestException e) when (e.InnerException is SocketException or null)
            {
                // Not listening yet (starting), or no longer (the VM is ending): look again.
            }
            catch (ControlException e) when (e.Message.Contains("(HTTP 409)", StringComparison.Ordinal))
            {
                // Stopped already; the end is on its way.
                return null;
            }
            catch (ControlException e)
            {
                return e.Message;
            }
            await Task.Delay(VmCommand.PollInterval, cancellation);
        }
        return null;
    }
}
