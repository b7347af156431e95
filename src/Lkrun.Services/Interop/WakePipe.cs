using System.IO.Pipes;

namespace Lkrun.Services.Interop;

/// <summary>
/// Wakes a thread that sleeps in poll(2) from another thread: the sleeper polls <see cref="ReadFd"/>, anyone calls
/// <see cref="Signal"/>. A pipe rather than an eventfd, so that it works on macOS too; .NET makes it close-on-exec.
/// At most two bytes are ever in the pipe (one signal pending, one that raced with a drain), so neither end blocks.
/// </summary>
internal sealed class WakePipe : IDisposable
{
    private readonly AnonymousPipeServerStream _writer;
    private readonly AnonymousPipeClientStream _reader;
    private readonly byte[] _drained = new byte[2];
    private int _pending;

    public WakePipe()
    {
        _writer = new AnonymousPipeServerStream(PipeDirection.Out, HandleInheritability.None);
        _reader = new AnonymousPipeClientStream(PipeDirection.In, _writer.ClientSafePipeHandle);
    }

    /// <summary>The descriptor to poll for reading.</summary>
    public int ReadFd => (int)_reader.SafePipeHandle.DangerousGetHandle();

    /// <summary>Makes the next (or current) poll on <see cref="ReadFd"/> return; callable from any thread.</summary>
    public void Signal()
    {
        if (Interlocked.Exchange(ref _pending, 1) == 0)
        {
            _writer.Write([1]);
        }
    }

    /// <summary>Takes the signal; call on the polling thread once <see cref="ReadFd"/> was readable.</summary>
    public void Drain()
    {
        Volatile.Write(ref _pending, 0);
        // Readable, so a byte is there and the read returns at once; a signal racing with this leaves one more.
        _reader.ReadExactly(_drained.AsSpan(0, 1));
    }

    public void Dispose()
    {
        _reader.Dispose();
        _writer.Dispose();
    }
}
