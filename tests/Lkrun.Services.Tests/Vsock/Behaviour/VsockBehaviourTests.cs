using System.Net.Sockets;
using System.Text;

namespace Lkrun.Tests.VsockBehaviour;

/// <summary>
/// What a program on the host sees of vsock, whichever transport carries it: guest.PPPPPPPP sockets reach the
/// guest's echo, discard and source services, and guest clients reach host listeners at 00000002.PPPPPPPP. Each
/// transport runs this suite against its own <see cref="IVsockWorld"/> (the tests of one world run one after
/// another).
/// </summary>
public abstract class VsockBehaviourTests<TWorld>(TWorld world)
    where TWorld : IVsockWorld
{
    protected static CancellationToken Cancellation => TestContext.Current.CancellationToken;

    protected TWorld World => world;

    private static byte[] RandomBytes(int count, int seed)
    {
        var bytes = new byte[count];
        new Random(seed).NextBytes(bytes);
        return bytes;
    }

    /// <summary>The guest tool's pattern: byte i of a stream is i % 251.</summary>
    private static byte[] Pattern(long offset, int count)
    {
        var bytes = new byte[count];
        for (var i = 0; i < count; i++)
        {
            bytes[i] = (byte)((offset + i) % 251);
        }

        return bytes;
    }

    /// <summary>Every connection holds a host socket in lkrun, so the idle descriptor count means none is left.</summary>
    private async Task WaitForNoConnectionsAsync()
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(60);
        while (world.Descriptors > world.IdleDescriptors)
        {
            Assert.True(DateTime.UtcNow < deadline, $"lkrun holds {world.Descriptors - world.IdleDescriptors} more descriptors than when idle");
            await Task.Delay(100, Cancellation);
        }
    }

    [Theory]
    [InlineData(1)]
    [InlineData(4095)]
    [InlineData(65537)]
    [InlineData(1 << 20)]
    [InlineData(16 << 20)]
    public async Task Echo_returns_every_byte(int size)
    {
        var data = RandomBytes(size, size);
        using var socket = world.ConnectGuestPort(GuestPorts.Echo);

        var echoed = await VsockStreams.SendAndReceiveAllAsync(socket, data);

        Assert.Equal(data.Length, echoed.Length);
        Assert.True(data.AsSpan().SequenceEqual(echoed), "echoed bytes differ");
    }

    [Fact]
    public async Task Sixty_four_connections_echo_at_once()
    {
        // Opened one by one: the guest's echo server accepts with a backlog of 16 and refuses beyond it.
        var sockets = new List<Socket>();
        try
        {
            for (var i = 0; i < 64; i++)
            {
                var socket = world.ConnectGuestPort(GuestPorts.Echo);
                sockets.Add(socket);
                await socket.SendAsync(new[] { (byte)i }, Cancellation);
                var first = new byte[1];
                Assert.Equal(1, await socket.ReceiveAsync(first, Cancellation));
                Assert.Equal((byte)i, first[0]);
            }

            var echoes = sockets.Select(async (socket, i) =>
            {
                var data = RandomBytes(128 * 1024, 1000 + i);
                var echoed = await VsockStreams.SendAndReceiveAllAsync(socket, data);
                return data.AsSpan().SequenceEqual(echoed);
            });

            Assert.All(await Task.WhenAll(echoes), Assert.True);
        }
        finally
        {
            foreach (var socket in sockets)
            {
                socket.Dispose();
            }
        }

        await WaitForNoConnectionsAsync();
    }

    [Fact]
    public async Task Half_close_still_gets_the_reply()
    {
        using var socket = world.ConnectGuestPort(GuestPorts.Discard);

        var reply = await VsockStreams.SendAndReceiveAllAsync(socket, RandomBytes(3 << 20, 5));

        Assert.Equal($"{3 << 20}\n", Encoding.ASCII.GetString(reply));
    }

    [Fact]
    public async Task Host_disconnecting_mid_stream_leaves_the_transport_serving()
    {
        using (var socket = world.ConnectGuestPort(GuestPorts.Source))
        {
            await socket.SendAsync("1073741824\n"u8.ToArray(), Cancellation);
            var buffer = new byte[1 << 20];
            var received = 0;
            while (received < buffer.Length)
            {
                var count = await socket.ReceiveAsync(buffer.AsMemory(received), Cancellation);
                Assert.True(count > 0, "the source ended early");
                received += count;
            }

            Assert.Equal(Pattern(0, buffer.Length), buffer);
        }

        using (var echo = world.ConnectGuestPort(GuestPorts.Echo))
        {
            Assert.Equal("still here"u8.ToArray(), await VsockStreams.SendAndReceiveAllAsync(echo, "still here"u8.ToArray()));
        }

        await WaitForNoConnectionsAsync();
    }

    [Fact]
    public void Guest_port_without_a_listener_closes_the_host_connection()
    {
        using var socket = world.ConnectGuestPort(GuestPorts.Silent);
        VsockStreams.AssertEnds(socket);
    }

    [Fact]
    public async Task Guest_connects_to_a_host_listener_and_gets_its_reply()
    {
        const int size = 4 << 20;
        using var listener = await world.ListenHostPortAsync(GuestPorts.HostReceiving);
        var serving = Task.Run(async () =>
        {
            using var connection = await listener.AcceptAsync(Cancellation);
            var received = await VsockStreams.ReceiveToEndAsync(connection);
            var intact = received.Length == size && received.AsSpan().SequenceEqual(Pattern(0, size));
            await connection.SendAsync(Encoding.ASCII.GetBytes(intact ? $"host got {received.Length} intact\n" : "host got damaged bytes\n"), Cancellation);
        }, Cancellation);

        var run = await world.GuestSendsAsync(GuestPorts.HostReceiving, size);
        await serving;

        Assert.False(run.Refused);
        Assert.Contains($"host got {size} intact", run.Output);
    }

    [Fact]
    public async Task Guest_receives_a_stream_from_a_host_listener()
    {
        const int size = 8 << 20;
        using var listener = await world.ListenHostPortAsync(GuestPorts.HostSending);
        var serving = Task.Run(async () =>
        {
            using var connection = await listener.AcceptAsync(Cancellation);
            var line = new List<byte>();
            var one = new byte[1];
            while (await connection.ReceiveAsync(one, Cancellation) == 1 && one[0] != '\n')
            {
                line.Add(one[0]);
            }

            var count = long.Parse(Encoding.ASCII.GetString([.. line]));
            for (long offset = 0; offset < count; offset += 1 << 20)
            {
                await connection.SendAsync(Pattern(offset, (int)Math.Min(1 << 20, count - offset)), Cancellation);
            }

            connection.Shutdown(SocketShutdown.Send);
            await VsockStreams.ReceiveToEndAsync(connection);
        }, Cancellation);

        var run = await world.GuestReceivesAsync(GuestPorts.HostSending, size);
        await serving;

        Assert.False(run.Refused);
        Assert.Contains($"received {size} bytes", run.Output);
    }

    [Fact]
    public async Task Guest_connection_without_a_host_listener_is_refused()
    {
        var run = await world.GuestSendsAsync(GuestPorts.HostSilent, 10);

        Assert.True(run.Refused, run.Output);
    }

    [Fact]
    public async Task Connect_and_close_cycles_leave_no_descriptors_or_connections_behind()
    {
        async Task CycleAsync(int i)
        {
            using var socket = world.ConnectGuestPort(GuestPorts.Echo);
            var echoed = await VsockStreams.SendAndReceiveAllAsync(socket, [(byte)i]);
            Assert.Equal([(byte)i], echoed);
        }

        for (var i = 0; i < 20; i++)
        {
            await CycleAsync(i);
        }

        await WaitForNoConnectionsAsync();
        var memoryBefore = world.ResidentBytes;

        for (var i = 0; i < 300; i++)
        {
            await CycleAsync(i);
        }

        await WaitForNoConnectionsAsync();
        Assert.Equal(world.IdleDescriptors, world.Descriptors);
        if (memoryBefore is { } before)
        {
            // 300 cycles: a leak of one 256 KiB connection buffer each would show far above this margin.
            Assert.InRange(world.ResidentBytes ?? 0, 0, before + (16 << 20));
        }

        Assert.DoesNotContain("vsock:", world.Reports);
    }
}
