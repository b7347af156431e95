namespace Lkrun.Services.Interop;

/// <summary>
/// The descriptors one turn of a poll(2) loop waits on, rebuilt on every turn. poll rather than epoll or kqueue:
/// it is the same call on Linux and macOS (struct pollfd and the POLL bits are identical on both), and libslirp
/// hands over its sockets afresh on every turn anyway. Used by one thread only.
/// </summary>
internal sealed unsafe class PollSet
{
    private LibC.PollFd[] _fds = new LibC.PollFd[32];

    public int Count { get; private set; }

    /// <summary>Empties the set for the next turn.</summary>
    public void Clear() => Count = 0;

    /// <summary>Adds <paramref name="fd"/>, watched for <paramref name="events"/>; returns its index for this turn.</summary>
    public int Add(int fd, short events)
    {
        if (Count == _fds.Length)
        {
            Array.Resize(ref _fds, _fds.Length * 2);
        }
        _fds[Count] = new LibC.PollFd { Fd = fd, Events = events };
        return Count++;
    }

    /// <summary>The events the last wait found at <paramref name="index"/>; none for an index outside this turn's set.</summary>
    public short ReturnedEvents(int index) => index >= 0 && index < Count ? _fds[index].REvents : (short)0;

    /// <summary>
    /// Waits up to <paramref name="timeoutMilliseconds"/> (-1: without limit). Returns how many descriptors are ready,
    /// 0 when the time ran out, and -1 when a signal interrupted the wait, which counts as no events.
    /// </summary>
    public int Wait(int timeoutMilliseconds)
    {
        // Safe: the array is pinned for the call and holds Count entries. nfds_t is 64 bits on Linux and 32 on
        // macOS; either way the count travels in a register whose low half holds it.
        fixed (LibC.PollFd* fds = _fds)
        {
            var ready = LibC.poll(fds, (nuint)Count, timeoutMilliseconds);
            return ready >= 0 || LibC.LastError == LibC.EINTR ? ready : throw LibC.Failure("poll");
        }
    }
}
