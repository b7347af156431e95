using System.Collections.Concurrent;
using System.Net.Sockets;
using System.Text;
using Lkrun.Services.Interop;
using Lkrun.Services.Vsock;

namespace Lkrun.Services.Tests.Fakes;

/// <summary>
/// A hypervisor's virtio socket device over socket pairs, behaving as Virtualization.framework's
/// <c>VZVirtioSocketDevice</c> does: every callback runs on one serial "framework queue" thread; a connect to a
/// guest port nobody serves is never answered; a guest connects only to host ports with a listener. Its "guest"
/// runs the test guest tool's services in-process: echo, discard and source, over the other end of each pair.
/// Every stream object it hands over counts how often it was released.
/// </summary>
internal sealed class FakeGuestSocketDevice : IGuestSocketDevice, IAsyncDisposable
{
    private readonly BlockingCollection<Action> _queue = [];
    private readonly Thread _queueThread;
    private readonly ConcurrentDictionary<uint, Func<Socket, Task>> _services = new();
    private readonly ConcurrentDictionary<uint, Task> _answerGates = new();
    private readonly ConcurrentDictionary<uint, GuestConnectionHandler> _listeners = new();
    private readonly ConcurrentDictionary<uint, Exception> _failingPorts = new();
    private readonly ConcurrentDictionary<uint, byte> _brokenPorts = new();
    private readonly ConcurrentQueue<FakeGuestStream> _streams = new();
    private readonly ConcurrentDictionary<Task, byte> _guestTasks = new();
    private int _connects;

    public FakeGuestSocketDevice()
    {
        _queueThread = new Thread(RunQueue) { IsBackground = true, Name = "fake framework queue" };
        _queueThread.Start();
    }

    /// <summary>Connects asked for so far, answered or not.</summary>
    public int ConnectCount => Volatile.Read(ref _connects);

    /// <summary>Every stream object handed to the transport so far.</summary>
    public IReadOnlyCollection<FakeGuestStream> Streams => _streams;

    /// <summary>The guest listens on <paramref name="port"/> and echoes every byte, then half-closes (vsock-echo).</summary>
    public void ServeEcho(uint port, Task? answerOnceCompleted = null) => Serve(port, EchoAsync, answerOnceCompleted);

    /// <summary>The guest reads to the end, then answers "&lt;count&gt;\n" (vsock-discard).</summary>
    public void ServeDiscard(uint port) => Serve(port, DiscardAsync, null);

    /// <summary>The guest reads a line N, sends N pattern bytes, half-closes and drains (vsock-source).</summary>
    public void ServeSource(uint port) => Serve(port, SourceAsync, null);

    /// <summary>Connects to <paramref name="port"/> fail with a framework error.</summary>
    public void FailConnects(uint port) => _failingPorts[port] = new IOException($"guest port {port}: connection refused");

    /// <summary>Connect throws for <paramref name="port"/>, as a broken engine would.</summary>
    public void BreakConnects(uint port) => _brokenPorts[port] = 0;

    public bool IsListening(uint port) => _listeners.ContainsKey(port);

    public void Connect(uint port, GuestConnectCompletion completed)
    {
        Interlocked.Increment(ref _connects);
        if (_brokenPorts.ContainsKey(port))
        {
            throw new InvalidOperationException($"the engine cannot connect to guest port {port}");
        }

        if (_failingPorts.TryGetValue(port, out var error))
        {
            _queue.Add(() => completed(null, error));
            return;
        }

        if (!_services.TryGetValue(port, out var service))
        {
            // The framework does nothing when the guest does not listen.
            return;
        }

        void Answer() => _queue.Add(() =>
        {
            var (hostEnd, guestEnd) = SocketPairs.Create();
            RunGuest(service, SocketPairs.AsSocket(guestEnd));
            completed(Track(hostEnd), null);
        });

        if (_answerGates.TryGetValue(port, out var gate))
        {
            gate.ContinueWith(_ => Answer(), TaskScheduler.Default);
        }
        else
        {
            Answer();
        }
    }

    public void Listen(uint port, GuestConnectionHandler accepted)
    {
        if (!_listeners.TryAdd(port, accepted))
        {
            throw new InvalidOperationException($"host port {port} is listened on twice");
        }
    }

    public void StopListening(uint port)
    {
        if (!_listeners.TryRemove(port, out _))
        {
            throw new InvalidOperationException($"host port {port} is not listened on");
        }
    }

    /// <summary>
    /// A guest program connects to host port <paramref name="port"/>: the guest's end of the stream, or null when
    /// the connection was refused (no listener, or the transport declined it).
    /// </summary>
    public Task<Socket?> ConnectFromGuestAsync(uint port)
    {
        var result = new TaskCompletionSource<Socket?>(TaskCreationOptions.RunContinuationsAsynchronously);
        _queue.Add(() =>
        {
            if (!_listeners.TryGetValue(port, out var accepted))
            {
                result.SetResult(null);
                return;
            }

            var (hostEnd, guestEnd) = SocketPairs.Create();
            if (accepted(Track(hostEnd)))
            {
                result.SetResult(SocketPairs.AsSocket(guestEnd));
            }
            else
            {
                guestEnd.Dispose();
                result.SetResult(null);
            }
        });
        return result.Task;
    }

    /// <summary>Waits until every stream handed over was released (the guest's side of each is closed).</summary>
    public async Task WaitUntilAllReleasedAsync()
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(30);
        while (_streams.Any(stream => stream.Releases == 0))
        {
            Assert.True(DateTime.UtcNow < deadline, $"{_streams.Count(stream => stream.Releases == 0)} stream objects are never released");
            await Task.Delay(20);
        }
    }

    public async ValueTask DisposeAsync()
    {
        _queue.CompleteAdding();
        _queueThread.Join();
        await Task.WhenAll(_guestTasks.Keys);
        _queue.Dispose();
    }

    private void Serve(uint port, Func<Socket, Task> service, Task? answerOnceCompleted)
    {
        _services[port] = service;
        if (answerOnceCompleted is not null)
        {
            _answerGates[port] = answerOnceCompleted;
        }
    }

    private FakeGuestStream Track(FileDescriptor hostEnd)
    {
        var stream = new FakeGuestStream(hostEnd);
        _streams.Enqueue(stream);
        return stream;
    }

    private void RunQueue()
    {
        foreach (var work in _queue.GetConsumingEnumerable())
        {
            work();
        }
    }

    private void RunGuest(Func<Socket, Task> service, Socket socket)
    {
        var task = Task.Run(async () =>
        {
            using (socket)
            {
                try
                {
                    await service(socket);
                }
                catch (SocketException)
                {
                    // The host side went away mid-stream, as a guest program sees it: EPIPE or ECONNRESET.
                }
            }
        });
        _guestTasks[task] = 0;
        task.ContinueWith(done => _guestTasks.TryRemove(done, out _), TaskScheduler.Default);
    }

    private static async Task EchoAsync(Socket socket)
    {
        var buffer = new byte[64 * 1024];
        while (await socket.ReceiveAsync(buffer) is var count and > 0)
        {
            await socket.SendAsync(buffer.AsMemory(0, count));
        }

        socket.Shutdown(SocketShutdown.Send);
    }

    private static async Task DiscardAsync(Socket socket)
    {
        var buffer = new byte[64 * 1024];
        long total = 0;
        while (await socket.ReceiveAsync(buffer) is var count and > 0)
        {
            total += count;
        }

        await socket.SendAsync(Encoding.ASCII.GetBytes($"{total}\n"));
        socket.Shutdown(SocketShutdown.Send);
    }

    private static async Task SourceAsync(Socket socket)
    {
        var count = long.Parse(await GuestPrograms.ReadLineAsync(socket));
        await GuestPrograms.SendPatternAsync(socket, count);
        socket.Shutdown(SocketShutdown.Send);
        var sink = new byte[256];
        while (await socket.ReceiveAsync(sink) > 0)
        {
        }
    }
}

/// <summary>A stream object as the framework hands it over: it owns its descriptor and counts its releases.</summary>
internal sealed class FakeGuestStream(FileDescriptor descriptor) : IGuestStream
{
    private int _releases;

    public int Releases => Volatile.Read(ref _releases);

    public int FileDescriptor { get; } = descriptor.Number;

    public void Dispose()
    {
        if (Interlocked.Increment(ref _releases) == 1)
        {
            descriptor.Dispose();
        }
    }
}

/// <summary>What the test guest tool's clients and services do on a stream, in-process.</summary>
internal static class GuestPrograms
{
    /// <summary>Byte i of a pattern stream is i % 251, as the guest tool sends it.</summary>
    public static byte[] Pattern(long offset, int count)
    {
        var bytes = new byte[count];
        for (var i = 0; i < count; i++)
        {
            bytes[i] = (byte)((offset + i) % 251);
        }

        return bytes;
    }

    public static async Task SendPatternAsync(Socket socket, long count)
    {
        for (long offset = 0; offset < count; offset += 64 * 1024)
        {
            await socket.SendAsync(Pattern(offset, (int)Math.Min(64 * 1024, count - offset)));
        }
    }

    /// <summary>Reads one line byte by byte, so that nothing after it is consumed.</summary>
    public static async Task<string> ReadLineAsync(Socket socket)
    {
        var line = new List<byte>();
        var one = new byte[1];
        while (await socket.ReceiveAsync(one) == 1 && one[0] != '\n')
        {
            line.Add(one[0]);
        }

        return Encoding.ASCII.GetString([.. line]);
    }
}
