using System.Net.Sockets;

namespace Lkrun.Services.Interop;

/// <summary>
/// What lkrun does when it runs out of file descriptors (EMFILE, ENFILE): every service refuses new connections
/// and keeps serving the ones it holds, and lkrun says so once rather than once per refused connection.
/// <para>
/// A listener cannot refuse a waiting connection without a descriptor to accept it into: left alone, the peer
/// would wait in the backlog until descriptors come back, and the listener would stay readable. So one descriptor
/// is kept in reserve (<c>/dev/null</c>), and a refusal closes it, accepts the waiting connection, closes that at
/// once (the peer reads end of stream), and takes the reserve back. The limit is the process's, so the reserve
/// and the report are too (<see cref="OfProcess"/>; tests make their own). Only .NET calls: it runs the same on
/// macOS.
/// </para>
/// </summary>
public sealed class DescriptorShortage
{
    /// <summary>The one every service of this process shares.</summary>
    public static readonly DescriptorShortage OfProcess = new();

    /// <summary>A shortage that lasts is reported again after this long, never more often.</summary>
    public static readonly TimeSpan ReportInterval = TimeSpan.FromMinutes(10);

    /// <summary>How long an accept loop rests when it can refuse nothing (the reserve is lost too).</summary>
    public static readonly TimeSpan RetryDelay = TimeSpan.FromMilliseconds(100);

    private readonly Lock _gate = new();
    private FileStream? _reserve;
    private long _lastReport = long.MinValue;

    /// <summary>True for the errors that mean this process or the system has no descriptor left.</summary>
    public static bool IsShortage(SocketException e) => e.SocketErrorCode == SocketError.TooManyOpenSockets;

    /// <summary>Takes the reserve descriptor if it is not held (at start, while descriptors are plentiful).</summary>
    public void Reserve()
    {
        lock (_gate)
        {
            TakeReserve();
        }
    }

    /// <summary>Says once (again at most every <see cref="ReportInterval"/>) that new connections are refused.</summary>
    public void Report(Action<string>? log)
    {
        if (log is null)
        {
            // A service without a log leaves the saying to the next one that has one.
            return;
        }
        var now = Environment.TickCount64;
        lock (_gate)
        {
            if (_lastReport != long.MinValue && now - _lastReport < (long)ReportInterval.TotalMilliseconds)
            {
                return;
            }
            _lastReport = now;
        }
        log("out of file descriptors (the limit of ulimit -n): new connections are refused until some close");
    }

    /// <summary>True when the process could open one more descriptor now (one is duplicated and closed at once).</summary>
    public bool CanOpenOne()
    {
        lock (_gate)
        {
            if (!TakeReserve())
            {
                return false;
            }
            try
            {
                Descriptors.Close(Descriptors.DuplicateCloseOnExec((int)_reserve!.SafeFileHandle.DangerousGetHandle()));
                return true;
            }
            catch (SystemCallException)
            {
                return false;
            }
        }
    }

    /// <summary>
    /// Refuses one connection waiting on <paramref name="listener"/> (its peer sees the connection closed); false
    /// when there was none, or no descriptor to take it into. The listener must have no accept in progress.
    /// </summary>
    public bool RefuseWaiting(Socket listener)
    {
        lock (_gate)
        {
            if (!TakeReserve() || !listener.Poll(0, SelectMode.SelectRead))
            {
                return false;
            }
            _reserve!.Dispose();
            _reserve = null;
            try
            {
                // Readable, and a waiting unix connection stays queued even if its peer gave up: this returns at once.
                listener.Accept().Dispose();
                return true;
            }
            catch (SocketException)
            {
                return false;
            }
            finally
            {
                TakeReserve();
            }
        }
    }

    /// <summary>
    /// The next connection <paramref name="accept"/> takes from <paramref name="listener"/>. Running out of
    /// descriptors is reported through <paramref name="log"/> and refuses waiting connections until one can be
    /// taken; other errors (out of buffers) are passed to <paramref name="complain"/> and retried after a rest.
    /// Throws <see cref="OperationCanceledException"/> once <paramref name="stopping"/> is cancelled, and what
    /// accepting on a closed listener throws.
    /// </summary>
    public async Task<Socket> AcceptAsync(
        Socket listener, Func<CancellationToken, ValueTask<Socket>> accept, Action<string>? log, Action<SocketException>? complain, CancellationToken stopping)
    {
        while (true)
        {
            try
            {
                return await accept(stopping).ConfigureAwait(false);
            }
            catch (SocketException e) when (!stopping.IsCancellationRequested && e.SocketErrorCode != SocketError.OperationAborted)
            {
                if (IsShortage(e))
                {
                    Report(log);
                    if (RefuseWaiting(listener))
                    {
                        continue;
                    }
                }
                else
                {
                    complain?.Invoke(e);
                }
            }
            await Task.Delay(RetryDelay, stopping).ConfigureAwait(false);
        }
    }

    private bool TakeReserve()
    {
        if (_reserve is null)
        {
            try
            {
                _reserve = new FileStream("/dev/null", FileMode.Open, FileAccess.Read, FileShare.ReadWrite, bufferSize: 0);
            }
            catch (IOException)
            {
                // Out of descriptors still: the next refusal tries again.
            }
        }
        return _reserve is not null;
    }
}
