namespace Lkrun.Services.Console;

public enum ConsoleCommand
{
    /// <summary>Ctrl-A x: stop the VM at once.</summary>
    StopVm,

    /// <summary>Ctrl-A p: press the guest's power button for a clean shutdown.</summary>
    PowerButton,

    /// <summary>Ctrl-A h or Ctrl-A ?: show the key sequences.</summary>
    Help,

    /// <summary>Ctrl-A d, on a console attached with <c>lkrun console</c>: leave it, and the VM running.</summary>
    Detach,
}

/// <summary>
/// QEMU's escape convention on an interactive console: Ctrl-A starts a command, Ctrl-A a (or Ctrl-A Ctrl-A) sends a
/// literal Ctrl-A, and anything else after Ctrl-A is passed through unchanged. Ctrl-A d is a command only on a
/// console one can detach from (<c>lkrun console</c>); on <c>lkrun run</c>'s own terminal it goes to the guest.
/// </summary>
public sealed class EscapeKeys(bool detachable = false)
{
    public const byte Prefix = 0x01;

    public const string HelpText =
        "lkrun console keys: Ctrl-A x stops the VM at once, Ctrl-A p presses its power button, Ctrl-A a sends Ctrl-A";

    public const string AttachedHelpText =
        "lkrun console keys: Ctrl-A d detaches (the VM keeps running), Ctrl-A x stops the VM at once, Ctrl-A p presses its power button, Ctrl-A a sends Ctrl-A";

    private bool _afterPrefix;

    public string Help => detachable ? AttachedHelpText : HelpText;

    /// <summary>
    /// Filters typed bytes: those meant for the guest go to <paramref name="toGuest"/> (at least
    /// <c>typed.Length + 1</c> bytes long), and the count is returned; commands are reported through <paramref name="onCommand"/>.
    /// </summary>
    public int Filter(ReadOnlySpan<byte> typed, Span<byte> toGuest, Action<ConsoleCommand> onCommand)
    {
        var count = 0;
        foreach (var key in typed)
        {
            if (!_afterPrefix)
            {
                if (key == Prefix)
                {
                    _afterPrefix = true;
                }
                else
                {
                    toGuest[count++] = key;
                }
                continue;
            }
            _afterPrefix = false;
            switch (key)
            {
                case (byte)'x' or (byte)'X':
                    onCommand(ConsoleCommand.StopVm);
                    break;
                case (byte)'p' or (byte)'P':
                    onCommand(ConsoleCommand.PowerButton);
                    break;
                case (byte)'h' or (byte)'H' or (byte)'?':
                    onCommand(ConsoleCommand.Help);
                    break;
                case (byte)'d' or (byte)'D' when detachable:
                    onCommand(ConsoleCommand.Detach);
                    break;
                case (byte)'a' or (byte)'A' or Prefix:
                    toGuest[count++] = Prefix;
                    break;
                default:
                    toGuest[count++] = Prefix;
                    toGuest[count++] = key;
                    break;
            }
        }
        return count;
    }
}
