using Lkrun.Services.Interop;

namespace Lkrun.Services.VhostUser;

/// <summary>A request from the front-end with its body and the descriptors that came with it.</summary>
internal sealed class VhostUserMessage(VhostUserHeader header, byte[] body, List<FileDescriptor> descriptors) : IDisposable
{
    public VhostUserHeader Header { get; } = header;

    public ReadOnlySpan<byte> Body => body;

    public IReadOnlyList<FileDescriptor> Descriptors => descriptors;

    /// <summary>Takes ownership of every descriptor; the message will not close them.</summary>
    public List<FileDescriptor> TakeDescriptors()
    {
        var taken = new List<FileDescriptor>(descriptors);
        descriptors.Clear();
        return taken;
    }

    /// <summary>Closes descriptors nobody took.</summary>
    public void Dispose()
    {
        foreach (var descriptor in descriptors)
        {
            descriptor.Dispose();
        }

        descriptors.Clear();
    }
}

/// <summary>
/// The back-end's end of the vhost-user socket. The socket is blocking with a timeout: it is read only when the
/// event loop reports it readable, and the front-end writes each message in one piece, so a message that starts
/// arriving completes promptly; one that does not is treated as a broken front-end.
/// </summary>
internal sealed class VhostUserEndpoint : IDisposable
{
    private readonly FileDescriptor _socket;
    private readonly byte[] _headerBuffer = new byte[VhostUserHeader.Length];
    private readonly byte[] _replyBuffer = new byte[VhostUserHeader.Length + VhostUserLimits.MaxBodySize];
    private readonly int[] _descriptorNumbers = new int[UnixSocket.MaxPassedDescriptors];

    public VhostUserEndpoint(FileDescriptor socket)
    {
        _socket = socket;
        UnixSocket.SetNonBlocking(socket.Number, nonBlocking: false);
        UnixSocket.SetTimeouts(socket.Number, VhostUserLimits.MessageTimeout);
    }

    public int Fd => _socket.Number;

    /// <summary>
    /// Reads one message. Returns null when the front-end closed the connection; throws
    /// <see cref="VhostUserProtocolException"/> for anything malformed and <see cref="SystemCallException"/> for
    /// socket errors.
    /// </summary>
    public VhostUserMessage? Receive()
    {
        var descriptors = new List<FileDescriptor>();
        try
        {
            var received = ReceiveExactly(_headerBuffer, descriptors, allowEndOfStream: true);
            if (!received)
            {
                return null;
            }

            var header = VhostUserHeader.Parse(_headerBuffer);
            var body = header.Size == 0 ? [] : new byte[header.Size];
            if (body.Length > 0)
            {
                var before = descriptors.Count;
                ReceiveExactly(body, descriptors, allowEndOfStream: false);
                if (descriptors.Count != before)
                {
                    throw new VhostUserProtocolException($"{header.Request}: descriptors arrived with the body");
                }
            }

            return new VhostUserMessage(header, body, descriptors);
        }
        catch
        {
            foreach (var descriptor in descriptors)
            {
                descriptor.Dispose();
            }

            throw;
        }
    }

    /// <summary>Sends the reply to <paramref name="request"/> with <paramref name="body"/>.</summary>
    public void Reply(VhostUserHeader request, ReadOnlySpan<byte> body)
    {
        request.WriteReply(_replyBuffer, body.Length);
        body.CopyTo(_replyBuffer.AsSpan(VhostUserHeader.Length));
        var result = UnixSocket.SendAll(_socket.Number, _replyBuffer.AsSpan(0, VhostUserHeader.Length + body.Length), []);
        if (result < 0)
        {
            throw new SystemCallException($"vhost-user reply to {request.Request}", -result);
        }
    }

    private bool ReceiveExactly(Span<byte> buffer, List<FileDescriptor> descriptors, bool allowEndOfStream)
    {
        var filled = 0;
        while (filled < buffer.Length)
        {
            var result = UnixSocket.Receive(_socket.Number, buffer[filled..], _descriptorNumbers, out var count);
            for (var i = 0; i < count; i++)
            {
                descriptors.Add(new FileDescriptor(_descriptorNumbers[i]));
            }

            if (descriptors.Count > UnixSocket.MaxPassedDescriptors)
            {
                throw new VhostUserProtocolException($"more than {UnixSocket.MaxPassedDescriptors} descriptors with one message");
            }

            if (result < 0)
            {
                throw new SystemCallException("vhost-user receive", -result);
            }

            if (result == 0)
            {
                if (filled == 0 && allowEndOfStream)
                {
                    return false;
                }

                throw new VhostUserProtocolException("front-end closed the connection inside a message");
            }

            filled += result;
        }

        return true;
    }

    public void Dispose() => _socket.Dispose();
}
