using System.Globalization;
using System.Net.Sockets;
using System.Text;

namespace Lkrun.Services.Console;

/// <summary>The client side of the console socket's handshake (see <see cref="ConsoleAttachments"/>).</summary>
public static class ConsoleAttachClient
{
    /// <summary>
    /// Connects and asks for the console with a screen of <paramref name="rows"/>: the connected socket, now
    /// carrying the console both ways, or the one line the relay refused it with.
    /// </summary>
    public static async Task<(Socket? Console, string? Refusal)> AttachAsync(string socketPath, int rows, CancellationToken cancellation)
    {
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            await socket.ConnectAsync(new UnixDomainSocketEndPoint(socketPath), cancellation);
            var request = string.Create(CultureInfo.InvariantCulture, $"attach {Math.Clamp(rows, 1, ConsoleAttachments.MaxRows)}\n");
            await socket.SendAsync(Encoding.ASCII.GetBytes(request), SocketFlags.None, cancellation);
            var answer = await ReadLineAsync(socket, cancellation);
            if (answer == ConsoleAttachments.Accepted)
            {
                return (socket, null);
            }
            socket.Dispose();
            return (null, answer is not null && answer.StartsWith(ConsoleAttachments.Refused + " ", StringComparison.Ordinal)
                ? answer[(ConsoleAttachments.Refused.Length + 1)..]
                : "the console closed the connection");
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    private static async Task<string?> ReadLineAsync(Socket socket, CancellationToken cancellation)
    {
        var line = new List<byte>();
        var one = new byte[1];
        while (line.Count < 1024)
        {
            if (await socket.ReceiveAsync(one, SocketFlags.None, cancellation) == 0)
            {
                return null;
            }
            if (one[0] == (byte)'\n')
            {
                return Encoding.UTF8.GetString([.. line]);
            }
            line.Add(one[0]);
        }
        return null;
    }
}
