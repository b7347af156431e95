using Lkrun.Services.Interop;

namespace Lkrun.Services.Tests.Interop;

public class EventLoopTests : IDisposable
{
    private readonly EventLoop _loop = new();

    public void Dispose() => _loop.Dispose();

    private sealed class Recorder : IEventHandler
    {
        public List<uint> Events { get; } = [];

        public Action? OnEvent { get; set; }

        public void OnEvents(uint events)
        {
            Events.Add(events);
            OnEvent?.Invoke();
        }
    }

    [Fact]
    public void Ready_descriptor_runs_its_handler()
    {
        using var fd = EventFd.Create();
        var recorder = new Recorder();
        using var registration = _loop.Register(fd.Number, EventLoop.Readable, recorder);

        EventFd.Signal(fd.Number);

        Assert.True(_loop.Wait(1000));
        Assert.Equal([EventLoop.Readable], recorder.Events);
    }

    [Fact]
    public void Changing_interest_stops_reports()
    {
        var (first, second) = UnixSocket.Pair(nonBlocking: true);
        using (first)
        using (second)
        {
            var recorder = new Recorder();
            using var registration = _loop.Register(first.Number, EventLoop.Writable, recorder);
            _loop.Wait(1000);
            Assert.Single(recorder.Events);

            registration.Update(0);
            _loop.Wait(0);
            Assert.Single(recorder.Events);
        }
    }

    [Fact]
    public void Handler_removed_earlier_in_the_same_batch_is_not_called()
    {
        using var a = EventFd.Create();
        using var b = EventFd.Create();
        var first = new Recorder();
        var second = new Recorder();
        var registrationA = _loop.Register(a.Number, EventLoop.Readable, first);
        var registrationB = _loop.Register(b.Number, EventLoop.Readable, second);
        first.OnEvent = registrationB.Dispose;
        second.OnEvent = registrationA.Dispose;
        EventFd.Signal(a.Number);
        EventFd.Signal(b.Number);

        _loop.Wait(1000);

        Assert.Equal(1, first.Events.Count + second.Events.Count);
    }

    [Fact]
    public void Wake_from_another_thread_ends_the_wait()
    {
        var waker = new Thread(_loop.Wake);
        waker.Start();

        Assert.False(_loop.Wait(-1));
        waker.Join();
    }
}
