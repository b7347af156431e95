using System.Net;
using Lkrun.Services.Network.Packets;
using Lkrun.Services.Network.Shared.Vpnkit;

namespace Lkrun.Fuzz.Targets;

/// <summary>
/// What a client of a shared network's ethernet socket sends before its frames, and what a server answers: the init
/// message, the command, the response. Each read either fails with a <see cref="VpnkitProtocolException"/> or
/// yields a message that writes back as itself (a disconnect's reason that is not UTF-8 once cut to what fits).
/// </summary>
internal sealed class VpnkitTarget : IFuzzTarget
{
    public IEnumerable<byte[]> Seeds()
    {
        yield return [.. VpnkitProtocol.Init(), .. VpnkitProtocol.Command(new VpnkitCommand(Guid.Parse("6f1c8a56-2b0e-4a55-9a43-0d5e3c1b2a10"), null))];
        yield return [.. VpnkitProtocol.Init(), .. VpnkitProtocol.Command(new VpnkitCommand(Guid.Parse("0a1b2c3d-4e5f-4061-8293-a4b5c6d7e8f9"), IPAddress.Parse("192.168.65.42")))];
        yield return VpnkitProtocol.Response(new VpnkitVif(1500, 1550, MacAddress.FromBytes([2, 0, 0x5e, 0x10, 0, 1])));
        yield return VpnkitProtocol.Response(new VpnkitDisconnect("address in use"));
    }

    public void Run(ReadOnlySpan<byte> input)
    {
        try
        {
            if (VpnkitProtocol.TryReadInit(input, out _) && input.Length >= VpnkitProtocol.InitLength)
            {
                ReadCommand(input[VpnkitProtocol.InitLength..]);
            }
        }
        catch (VpnkitProtocolException)
        {
        }
        ReadCommand(input);
        try
        {
            if (VpnkitProtocol.TryReadResponse(input, out var response))
            {
                Check.That(VpnkitProtocol.TryReadResponse(VpnkitProtocol.Response(response), out var written), "a response writes back");
                // A reason that is not UTF-8 reads with replacement characters, which may not fit back whole.
                Check.That(
                    written == response || (written, response) is (VpnkitDisconnect cut, VpnkitDisconnect read) && read.Reason.StartsWith(cut.Reason, StringComparison.Ordinal),
                    "a response writes back as itself, or its reason cut");
                Check.That(VpnkitProtocol.TryReadResponse(VpnkitProtocol.Response(written), out var again) && again == written, "a written response writes back as itself");
            }
        }
        catch (VpnkitProtocolException)
        {
        }
    }

    private static void ReadCommand(ReadOnlySpan<byte> bytes)
    {
        try
        {
            if (VpnkitProtocol.TryReadCommand(bytes, out var command))
            {
                Check.That(VpnkitProtocol.TryReadCommand(VpnkitProtocol.Command(command), out var again) && again == command, "a command writes back as itself");
            }
        }
        catch (VpnkitProtocolException)
        {
        }
    }
}
