using System.Text;
using Lkrun.Services.Network.Shared.Ports;

namespace Lkrun.Fuzz.Targets;

/// <summary>
/// A line on a shared network's port socket, as any local client may send it, and the answer a client reads: each
/// is refused only with a <see cref="PortControlException"/>, and what is read encodes to a line that reads the same.
/// </summary>
internal sealed class PortControlTarget : IFuzzTarget
{
    public IEnumerable<byte[]> Seeds()
    {
        yield return Encoding.UTF8.GetBytes("""{"request":"expose","protocol":"tcp","hostAddress":"127.0.0.1","hostPort":8080,"guestAddress":"192.168.65.3","guestPort":80}""");
        yield return Encoding.UTF8.GetBytes("""{"request":"unexpose","protocol":"udp","hostAddress":"127.0.0.1","hostPort":5353}""");
        yield return Encoding.UTF8.GetBytes("""{"request":"list"}""");
        yield return Encoding.UTF8.GetBytes("""{"ok":true,"ports":[{"protocol":"tcp","hostAddress":"127.0.0.1","hostPort":8080,"guestAddress":"192.168.65.3","guestPort":80}]}""");
        yield return Encoding.UTF8.GetBytes("""{"ok":false,"error":"tcp port 127.0.0.1:8080 is already in use on this host"}""");
    }

    public void Run(ReadOnlySpan<byte> input)
    {
        try
        {
            var request = PortControl.DecodeRequest(input);
            var again = PortControl.DecodeRequest(Encoding.UTF8.GetBytes(PortControl.Encode(request)));
            Check.That(Encoding.UTF8.GetString(Encoding.UTF8.GetBytes(PortControl.Encode(again))) == PortControl.Encode(request), "a request encodes to a line that reads the same");
        }
        catch (PortControlException)
        {
        }
        try
        {
            var response = PortControl.DecodeResponse(input);
            var again = PortControl.DecodeResponse(Encoding.UTF8.GetBytes(PortControl.EncodeResponse(response)));
            Check.That(PortControl.EncodeResponse(again) == PortControl.EncodeResponse(response), "an answer encodes to a line that reads the same");
        }
        catch (PortControlException)
        {
        }
    }
}
