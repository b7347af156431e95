using System.Buffers;
using System.Net.Sockets;
using Lkrun.Services.Interop;

namespace Lkrun.Services.Vsock;

/// <summary>
/// One vsock stream of a <see cref="VsockStreamTransport"/>: bytes copied both ways between a host unix socket and
/// the descriptor the hypervisor handed over, one receive loop per direction.
/// <para>
/// Back-pressure: a loop reads again only once the other side took everything it read, so each direction holds
/// at most one buffer. End of stream on one side becomes shutdown(SHUT_WR) on the other, and the other direction
/// goes on (a half-closed peer still gets its reply); the stream ends when both directions reached their end. An
/// error in either direction (a reset, a peer gone while bytes were owed to it) or the transport stopping ends both
/// at once. Then both sockets close and the hypervisor's stream object is released, exactly once.
/// </para>
/// </summary>
internal static class StreamRelay
{
    public static async Task RunAsync(Socket host, IGuestStream stream, CancellationToken stopping)
    {
        Socket? guest = null;
        try
        {
            guest = OpenGuestSocket(stream);
            using var abort = CancellationTokenSource.CreateLinkedTokenSource(stopping);
            await Task.WhenAll(CopyAsync(host, guest, abort), CopyAsync(guest, host, abort)).ConfigureAwait(false);
        }
        catch (Exception e) when (e is IOException or SocketException)
        {
            // No descriptor left for the duplicate: the stream ends before it began.
        }
        finally
        {
            guest?.Dispose();
            host.Dispose();
            stream.Dispose();
        }
    }

    /// <summary>
    /// A socket over a duplicate of the stream's descriptor: .NET owns and closes the duplicate (and unregisters it
    /// from its poller), while the original stays the hypervisor object's to close.
    /// </summary>
    private static Socket OpenGuestSocket(IGuestStream stream)
    {
        using var duplicate = Posix.DuplicateCloseOnExec(stream.FileDescriptor);
        var handle = new SafeSocketHandle(duplicate.DangerousGetHandle(), ownsHandle: true);
        duplicate.SetHandleAsInvalid();
        try
        {
            return new Socket(handle);
        }
        catch
        {
            handle.Dispose();
            throw;
        }
    }

    private static async Task CopyAsync(Socket from, Socket to, CancellationTokenSource abort)
    {
        var buffer = ArrayPool<byte>.Shared.Rent(VsockLimits.StreamCopyBufferSize);
        try
        {
            while (true)
            {
                var received = await from.ReceiveAsync(buffer.AsMemory(0, VsockLimits.StreamCopyBufferSize), SocketFlags.None, abort.Token).ConfigureAwait(false);
                if (received == 0)
                {
                    to.Shutdown(SocketShutdown.Send);
                    return;
                }

                for (var sent = 0; sent < received;)
                {
                    sent += await to.SendAsync(buffer.AsMemory(sent, received - sent), SocketFlags.None, abort.Token).ConfigureAwait(false);
                }
            }
        }
        catch (Exception e) when (e is SocketException or OperationCanceledException or ObjectDisposedException)
        {
            // A reset, a peer gone or the transport stopping: the stream is over both ways.
            await abort.CancelAsync().ConfigureAwait(false);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }
}
