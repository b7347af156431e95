using Lkrun.Services.Interop;

namespace Lkrun.Services.Tests.Interop;

public sealed class WakePipeTests : IDisposable
{
    private readonly WakePipe _wake = new();
    private readonly PollSet _poll = new();

    public void Dispose() => _wake.Dispose();

    private bool Readable(int timeoutMilliseconds)
    {
        _poll.Clear();
        var index = _poll.Add(_wake.ReadFd, LibC.POLLIN);
        return _poll.Wait(timeoutMilliseconds) > 0 && (_poll.ReturnedEvents(index) & LibC.POLLIN) != 0;
    }

    [Fact]
    public async Task A_signal_from_another_thread_wakes_a_poll_without_a_time_limit()
    {
        var signaller = Task.Run(_wake.Signal, TestContext.Current.CancellationToken);
        Assert.True(Readable(-1));
        await signaller;
    }

    [Fact]
    public void Many_signals_are_one_wake_up_and_draining_quiets_the_pipe()
    {
        Assert.False(Readable(0));
        for (var i = 0; i < 100_000; i++)
        {
            _wake.Signal();
        }
        Assert.True(Readable(0));
        _wake.Drain();
        Assert.False(Readable(0));
        _wake.Signal();
        Assert.True(Readable(0));
    }
}
