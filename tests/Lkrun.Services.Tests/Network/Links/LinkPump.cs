using Lkrun.Services.Interop;
using Lkrun.Services.Network.Links;

namespace Lkrun.Services.Tests.Network.Links;

/// <summary>Drives a link on the test's thread as the network's thread drives it, collecting the guest's frames.</summary>
internal sealed class LinkPump(IFrameLink link) : IFrameSink
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(20);

    private readonly PollSet _poll = new();

    public List<byte[]> FromGuest { get; } = [];

    public void Deliver(ReadOnlySpan<byte> frame) => FromGuest.Add(frame.ToArray());

    /// <summary>One turn: poll for at most <paramref name="waitMilliseconds"/>, serve, flush.</summary>
    public void Turn(int waitMilliseconds = 20)
    {
        _poll.Clear();
        var limit = link.AddTo(_poll);
        _poll.Wait(limit < 0 ? waitMilliseconds : Math.Min(limit, waitMilliseconds));
        link.Serve(_poll, this);
        link.Flush();
    }

    /// <summary>Turns until <paramref name="done"/> holds; fails the test when it does not within the patience.</summary>
    public void Until(Func<bool> done, string what)
    {
        var deadline = DateTime.UtcNow + Patience;
        while (!done())
        {
            Assert.True(DateTime.UtcNow < deadline, $"timed out waiting for {what}");
            Turn();
        }
    }

    /// <summary>Turns while <paramref name="task"/> runs (a peer's I/O that needs the link to move), then returns its result.</summary>
    public T While<T>(Task<T> task)
    {
        Until(() => task.IsCompleted, "the peer");
        return task.GetAwaiter().GetResult();
    }

    public void While(Task task)
    {
        Until(() => task.IsCompleted, "the peer");
        task.GetAwaiter().GetResult();
    }
}
