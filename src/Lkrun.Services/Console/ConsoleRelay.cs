using System.Net.Sockets;
using System.Text;

namespace Lkrun.Services.Console;

/// <summary>
/// How one console device of the VM reaches the relay: a unix socket the relay listens on and the engine connects
/// to (QEMU's chardev sockets), or a socket already connected to the engine (a file-handle attachment's end).
/// </summary>
public abstract record ConsoleDevice
{
    public static ConsoleDevice Listening(string path) => new ListeningConsoleDevice(path);

    public static ConsoleDevice Connected(Socket socket) => new ConnectedConsoleDevice(socket);
}

public sealed record ListeningConsoleDevice(string Path) : ConsoleDevice;

public sealed record ConnectedConsoleDevice(Socket Socket) : ConsoleDevice;

/// <summary>
/// The host side of the guest's console. A VM may have several console devices - on QEMU a serial port (ttyS0) and
/// a virtio console (hvc0), so an image prints and reads whichever its cmdline names. Each device reaches the relay
/// over one socket; what any prints goes to one output, and what the user types goes to all. Once the output
/// fails (a closed pipe, a full disk) the relay says so once and goes on draining the devices, since a guest whose
/// console is not read stalls on its next line. With an attach point, the output also goes to the terminal of
/// <c>lkrun console</c> (see <see cref="ConsoleAttachments"/>), whose keys reach the guest as the user's do.
/// </summary>
public sealed class ConsoleRelay : IAsyncDisposable
{
    private const int BufferSize = 16 * 1024;

    /// <summary>How much typed input is kept for consoles that have not connected yet.</summary>
    private const int MaxTypedBeforeConnect = 4096;

    private readonly Stream _output;
    private readonly SemaphoreSlim _outputLock = new(1, 1);
    private readonly List<Socket> _listeners = [];
    private readonly List<string> _socketPaths = [];
    private readonly List<Socket> _devices = [];
    private readonly List<Task> _pumps = [];
    private readonly CancellationTokenSource _stopping = new();
    private readonly EscapeKeys _escapeKeys = new();
    private readonly Action<ConsoleCommand> _onCommand;
    private readonly Action<IOException> _onOutputLost;
    private readonly List<byte> _typedBeforeConnect = [];
    private ConsoleAttachments? _attachments;
    private int _expectedDevices;
    private bool _outputLost;

    private ConsoleRelay(Stream output, Action<ConsoleCommand> onCommand, Action<IOException> onOutputLost)
    {
        _output = output;
        _onCommand = onCommand;
        _onOutputLost = onOutputLost;
    }

    /// <summary>
    /// Listens for, or takes, <paramref name="devices"/> before the VM starts. When <paramref name="input"/> is
    /// given, typed bytes are read from it on a dedicated thread, filtered through the escape keys, and sent to the
    /// guest. <paramref name="onOutputLost"/> is called once, with the error, when writing to
    /// <paramref name="output"/> fails. <paramref name="attachPoint"/>, when given, is where terminals attach.
    /// </summary>
    public static ConsoleRelay Start(
        IReadOnlyList<ConsoleDevice> devices,
        Stream output,
        Stream? input,
        Action<ConsoleCommand> onCommand,
        Action<IOException> onOutputLost,
        ConsoleAttachPoint? attachPoint = null)
    {
        var relay = new ConsoleRelay(output, onCommand, onOutputLost);
        try
        {
            if (attachPoint is not null)
            {
                relay._attachments = ConsoleAttachments.Listen(attachPoint, typed => relay.SendToGuest(typed.Span), onCommand);
            }
            relay._expectedDevices = devices.Count;
            foreach (var device in devices)
            {
                switch (device)
                {
                    case ListeningConsoleDevice listening:
                        relay.Listen(listening.Path);
                        break;
                    case ConnectedConsoleDevice connected:
                        relay._pumps.Add(relay.PumpAsync(connected.Socket));
                        break;
                }
            }
        }
        catch
        {
            relay.CloseListeners();
            relay._attachments?.DisposeAsync().AsTask().GetAwaiter().GetResult();
            throw;
        }
        if (input is not null)
        {
            new Thread(() => relay.ReadTypedInput(input)) { IsBackground = true, Name = "console input" }.Start();
        }
        return relay;
    }

    /// <summary>Writes a line of lkrun's own on the console output (CR LF, since the terminal may be raw).</summary>
    public async Task WriteNoticeAsync(string text)
    {
        var bytes = Encoding.UTF8.GetBytes("\r\n" + text + "\r\n");
        await WriteOutputAsync(bytes, CancellationToken.None);
    }

    /// <summary>Waits until what the VM printed has been written out, then stops.</summary>
    public async ValueTask DisposeAsync()
    {
        CloseListeners();
        // The VM has exited by now, so its sockets are at end of stream: let the pumps drain what is buffered.
        var drained = Task.WhenAll(_pumps);
        if (await Task.WhenAny(drained, Task.Delay(TimeSpan.FromSeconds(2))) != drained)
        {
            _stopping.Cancel();
        }
        lock (_devices)
        {
            foreach (var device in _devices)
            {
                device.Dispose();
            }
        }
        // An empty write flushes what the output still holds, unless it is gone.
        await WriteOutputAsync(ReadOnlyMemory<byte>.Empty, CancellationToken.None);
        if (_attachments is not null)
        {
            await _attachments.DisposeAsync();
        }
    }

    private void Listen(string path)
    {
        File.Delete(path);
        var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        _listeners.Add(listener);
        listener.Bind(new UnixDomainSocketEndPoint(path));
        _socketPaths.Add(path);
        listener.Listen(1);
        _pumps.Add(AcceptAndPumpAsync(listener));
    }

    private void CloseListeners()
    {
        foreach (var listener in _listeners)
        {
            listener.Dispose();
        }
        foreach (var path in _socketPaths)
        {
            File.Delete(path);
        }
        _listeners.Clear();
        _socketPaths.Clear();
    }

    private async Task AcceptAndPumpAsync(Socket listener)
    {
        Socket device;
        try
        {
            device = await listener.AcceptAsync(_stopping.Token);
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException or OperationCanceledException)
        {
            return;
        }
        await PumpAsync(device);
    }

    private async Task PumpAsync(Socket device)
    {
        lock (_devices)
        {
            _devices.Add(device);
            if (_devices.Count == _expectedDevices && _typedBeforeConnect.Count > 0)
            {
                SendToGuestLocked([.. _typedBeforeConnect]);
                _typedBeforeConnect.Clear();
            }
        }
        var buffer = new byte[BufferSize];
        try
        {
            int read;
            while ((read = await device.ReceiveAsync(buffer, SocketFlags.None, _stopping.Token)) > 0)
            {
                await WriteOutputAsync(buffer.AsMemory(0, read), _stopping.Token);
            }
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException or OperationCanceledException or IOException)
        {
            // The VM closed its end or the relay is stopping; either way this console is done.
        }
    }

    private async Task WriteOutputAsync(ReadOnlyMemory<byte> bytes, CancellationToken cancellation)
    {
        await _outputLock.WaitAsync(cancellation);
        try
        {
            // An attached terminal gets the output even when the main output is lost (a full disk, say).
            _attachments?.Record(bytes.Span);
            if (_outputLost)
            {
                return;
            }

            await _output.WriteAsync(bytes, cancellation);
            await _output.FlushAsync(cancellation);
        }
        catch (IOException e)
        {
            _outputLost = true;
            _onOutputLost(e);
        }
        finally
        {
            _outputLock.Release();
        }
    }

    private void ReadTypedInput(Stream input)
    {
        var typed = new byte[1024];
        var toGuest = new byte[typed.Length * 2];
        try
        {
            int read;
            while ((read = input.Read(typed)) > 0)
            {
                var count = _escapeKeys.Filter(typed.AsSpan(0, read), toGuest, OnCommand);
                if (count > 0)
                {
                    SendToGuest(toGuest.AsSpan(0, count));
                }
            }
        }
        catch (IOException)
        {
            // stdin went away (terminal closed); the console keeps printing.
        }
    }

    private void OnCommand(ConsoleCommand command)
    {
        if (command == ConsoleCommand.Help)
        {
            _ = WriteNoticeAsync(EscapeKeys.HelpText);
            return;
        }
        _onCommand(command);
    }

    private void SendToGuest(ReadOnlySpan<byte> bytes)
    {
        lock (_devices)
        {
            if (_devices.Count < _expectedDevices)
            {
                // Keys typed while the VM is starting wait for both consoles, as a terminal's buffer would.
                var room = Math.Max(0, MaxTypedBeforeConnect - _typedBeforeConnect.Count);
                _typedBeforeConnect.AddRange(bytes[..Math.Min(room, bytes.Length)]);
                return;
            }
            SendToGuestLocked(bytes);
        }
    }

    private void SendToGuestLocked(ReadOnlySpan<byte> bytes)
    {
        foreach (var device in _devices)
        {
            try
            {
                device.Send(bytes);
            }
            catch (Exception e) when (e is SocketException or ObjectDisposedException)
            {
                // A console device that went away (or the relay closing it as lkrun exits) does not stop the other.
            }
        }
    }
}
