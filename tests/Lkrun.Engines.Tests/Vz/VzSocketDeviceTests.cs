using System.Net.Sockets;
using Lkrun.Engines.Tests.Vz.Fakes;
using Lkrun.Services.Vsock;
using Microsoft.Extensions.Time.Testing;

namespace Lkrun.Engines.Tests.Vz;

public sealed class VzSocketDeviceTests : IAsyncLifetime
{
    private readonly VzHarness _vm = new();
    private IGuestSocketDevice _device = null!;

    public async ValueTask InitializeAsync() => _device = (await _vm.StartAsync()).SocketDevice!;

    public ValueTask DisposeAsync() => _vm.DisposeAsync();

    private static CancellationToken Cancellation => TestContext.Current.CancellationToken;

    /// <summary>The stream's descriptor as a socket that does not own it (the stream does).</summary>
    private static Socket Borrow(IGuestStream stream) => new(new SafeSocketHandle(stream.FileDescriptor, ownsHandle: false));

    private static async Task<string> ReceiveAsync(Socket socket, int length)
    {
        var buffer = new byte[length];
        var received = 0;
        while (received < length)
        {
            var count = await socket.ReceiveAsync(buffer.AsMemory(received), Cancellation);
            if (count == 0)
            {
                break;
            }
            received += count;
        }
        return System.Text.Encoding.ASCII.GetString(buffer, 0, received);
    }

    private Task<(IGuestStream? Stream, Exception? Error)> ConnectAsync(uint port)
    {
        var answer = new TaskCompletionSource<(IGuestStream?, Exception?)>(TaskCreationOptions.RunContinuationsAsynchronously);
        _device.Connect(port, (stream, error) => answer.SetResult((stream, error)));
        return answer.Task;
    }

    [Fact]
    public async Task A_connection_to_a_listening_guest_port_carries_bytes_until_it_is_disposed()
    {
        _vm.Fake.GuestPorts[2374] = GuestPort.Listening;

        var (stream, error) = await ConnectAsync(2374);

        Assert.Null(error);
        var guest = Assert.Single(_vm.Fake.GuestEnds[2374]);
        using (var host = Borrow(stream!))
        {
            await host.SendAsync("ping"u8.ToArray(), Cancellation);
            Assert.Equal("ping", await ReceiveAsync(guest, 4));
            await guest.SendAsync("pong"u8.ToArray(), Cancellation);
            Assert.Equal("pong", await ReceiveAsync(host, 4));
        }
        // The connection object was retained past the handler: its autorelease pool has long drained.
        Assert.Contains("retain", _vm.Fake.Selectors(call => call.Receiver == "VZVirtioSocketConnection"));

        stream!.Dispose();
        stream.Dispose();

        Assert.Equal("", await ReceiveAsync(guest, 1));
        _vm.Fake.Drain();
        Assert.Equal(["retain", "fileDescriptor", "close", "release"], _vm.Fake.Selectors(call => call.Receiver == "VZVirtioSocketConnection"));
        await _vm.StopAndAssertCleanAsync();
    }

    /// <summary>
    /// VZVirtioSocketDevice.h: connectToPort "does nothing if the guest does not listen". The answer never comes, the
    /// transport gives up on its own clock, and the block the framework kept goes with the VM, never run.
    /// </summary>
    [Fact]
    public async Task A_connection_to_a_port_nobody_listens_on_never_answers_and_leaks_nothing()
    {
        var time = new FakeTimeProvider();
        var answered = false;
        _device.Connect(5000, (stream, _) =>
        {
            answered = true;
            stream?.Dispose();
        });
        var timeout = Task.Delay(TimeSpan.FromSeconds(5), time, Cancellation);
        _vm.Fake.Drain();
        Assert.Equal(1, _vm.Fake.PendingBlocks());

        time.Advance(TimeSpan.FromSeconds(5));
        await timeout;

        Assert.False(answered);
        await _vm.StopAndAssertCleanAsync();
        Assert.False(answered);
        Assert.Equal(0, _vm.Fake.PendingBlocks());
        Assert.Equal(0, _vm.Fake.Blocks().Single(block => block.Kind == "connection").Invocations);
    }

    /// <summary>An answer that comes after the transport gave up is disposed at once: closed, released, the guest sees the end.</summary>
    [Fact]
    public async Task A_late_answer_is_closed_and_released()
    {
        _vm.Fake.GuestPorts[6000] = GuestPort.Listening;
        var late = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        _device.Connect(6000, (stream, _) =>
        {
            stream!.Dispose();
            late.SetResult();
        });
        await late.Task;

        Assert.Equal("", await ReceiveAsync(Assert.Single(_vm.Fake.GuestEnds[6000]), 1));
        await _vm.StopAndAssertCleanAsync();
    }

    [Fact]
    public async Task A_refused_connection_is_an_error_naming_the_port()
    {
        _vm.Fake.GuestPorts[7] = GuestPort.Refused;

        var (stream, error) = await ConnectAsync(7);

        Assert.Null(stream);
        Assert.Equal("vsock: guest port 7: Connection reset by peer (NSPOSIXErrorDomain 54)", Assert.IsType<IOException>(error).Message);
        await _vm.StopAndAssertCleanAsync();
    }

    [Fact]
    public async Task A_connect_to_a_vm_that_stopped_is_refused_without_asking_the_framework()
    {
        _vm.Fake.GuestPorts[5000] = GuestPort.Listening;
        _vm.Fake.GuestPowersOff();
        await _vm.Machine!.Exit;

        var (stream, error) = await ConnectAsync(5000);

        Assert.Null(stream);
        Assert.Equal("vsock: guest port 5000: the VM is not running", Assert.IsType<IOException>(error).Message);
        Assert.DoesNotContain("connectToPort:completionHandler:", _vm.Fake.Selectors());
        await _vm.StopAndAssertCleanAsync();
    }

    [Fact]
    public async Task A_guest_connection_to_a_listened_port_is_handed_over_until_the_listener_goes()
    {
        var accepted = new TaskCompletionSource<IGuestStream>(TaskCreationOptions.RunContinuationsAsynchronously);
        _device.Listen(1024, stream =>
        {
            accepted.SetResult(stream);
            return true;
        });
        _vm.Fake.Drain();

        var (taken, guest) = await _vm.Fake.GuestConnectsToHost(1024);

        Assert.True(taken);
        var stream = await accepted.Task;
        using (var host = Borrow(stream))
        {
            await guest.SendAsync("hello"u8.ToArray(), Cancellation);
            Assert.Equal("hello", await ReceiveAsync(host, 5));
        }
        stream.Dispose();
        Assert.Equal("", await ReceiveAsync(guest, 1));

        _device.StopListening(1024);
        _vm.Fake.Drain();
        await Assert.ThrowsAsync<InvalidOperationException>(() => _vm.Fake.GuestConnectsToHost(1024));
        Assert.Equal(
            ["setDelegate:", "setSocketListener:forPort:", "removeSocketListenerForPort:"],
            _vm.Fake.Selectors(call => call.Selector is "setDelegate:" && call.Receiver == "VZVirtioSocketListener" || call.Selector.Contains("SocketListener", StringComparison.Ordinal)));
        await _vm.StopAndAssertCleanAsync();
    }

    [Fact]
    public async Task A_connection_the_transport_refuses_is_reset_and_released()
    {
        _device.Listen(1025, stream =>
        {
            stream.Dispose();
            return false;
        });
        _vm.Fake.Drain();

        var (taken, guest) = await _vm.Fake.GuestConnectsToHost(1025);

        Assert.False(taken);
        Assert.Equal("", await ReceiveAsync(guest, 1));
        await _vm.StopAndAssertCleanAsync();
    }

    [Fact]
    public async Task Disposing_the_vm_closes_the_streams_still_open_and_refuses_new_ones()
    {
        _vm.Fake.GuestPorts[80] = GuestPort.Listening;
        _device.Listen(2048, _ => true);
        var (open, _) = await ConnectAsync(80);
        _vm.Fake.Drain();

        await _vm.StopAndAssertCleanAsync();

        Assert.Equal("", await ReceiveAsync(Assert.Single(_vm.Fake.GuestEnds[80]), 1));
        open!.Dispose();
        var (stream, error) = await ConnectAsync(80);
        Assert.Null(stream);
        Assert.IsType<ObjectDisposedException>(error);
        _vm.Fake.AssertClean();
    }
}
