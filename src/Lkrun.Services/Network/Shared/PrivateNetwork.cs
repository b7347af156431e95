using System.Diagnostics;
using System.Globalization;
using Lkrun.Services.Interop;
using Lkrun.Services.State;
using Microsoft.Win32.SafeHandles;

namespace Lkrun.Services.Network.Shared;

/// <summary>
/// The shared network <c>-networking vpnkit</c> starts for a VM: <c>lkrun network serve</c> on the state dir's
/// <c>vpnkit_eth.sock</c> and <c>vpnkit_port.sock</c>, as a process of its own, detached from the terminal and
/// writing to <c>vpnkit.log</c>, so that it outlives the lkrun that started it while other VMs are attached to it.
/// It stops by itself once no VM has been attached for <see cref="IdleExit"/>. A network already served at those
/// sockets (started by an earlier run of the same state dir, and still serving others) is attached to as it is.
/// </summary>
public static class PrivateNetwork
{
    /// <summary>How long the service waits, with no VM attached, before it stops.</summary>
    public static readonly TimeSpan IdleExit = TimeSpan.FromSeconds(5);

    /// <summary>How long a new service may take to listen.</summary>
    private static readonly TimeSpan StartTimeout = TimeSpan.FromSeconds(10);

    /// <summary>The options of <c>lkrun network serve</c> that make it a private instance.</summary>
    public const string IdleExitOption = "--idle-exit";
    public const string LogOption = "--log";

    /// <summary>Starts the service for the state dir of <paramref name="layout"/> unless one serves its sockets; true when this call started it.</summary>
    public static bool EnsureRunning(StateLayout layout)
    {
        if (SharedNetwork.IsServed(layout.VpnkitEthernetSocket) && File.Exists(layout.VpnkitPortSocket))
        {
            return false;
        }
        var (program, prefix) = Self();
        var start = new ProcessStartInfo(program)
        {
            UseShellExecute = false,
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        foreach (var argument in prefix.Concat([
                     "network", "serve", "--eth", layout.VpnkitEthernetSocket, "--port", layout.VpnkitPortSocket,
                     IdleExitOption, IdleExit.TotalSeconds.ToString(CultureInfo.InvariantCulture), LogOption, layout.VpnkitLog]))
        {
            start.ArgumentList.Add(argument);
        }
        using var process = Process.Start(start) ?? throw NetworkException.Host($"could not start {program}");
        // The service points its standard streams elsewhere at once; these ends only keep it off lkrun's terminal.
        process.StandardInput.Close();
        process.StandardOutput.Close();
        process.StandardError.Close();
        var waited = Stopwatch.StartNew();
        while (!(SharedNetwork.IsServed(layout.VpnkitEthernetSocket) && File.Exists(layout.VpnkitPortSocket)))
        {
            if (process.HasExited || waited.Elapsed > StartTimeout)
            {
                throw NetworkException.Host($"the shared network for this VM did not start{LastLine(layout.VpnkitLog)} (see {layout.VpnkitLog})");
            }
            Thread.Sleep(20);
        }
        return true;
    }

    /// <summary>Turns the running <c>lkrun network serve</c> into a private instance's process: detached, writing to <paramref name="log"/>.</summary>
    public static SafeFileHandle Detach(string log)
    {
        var handle = File.OpenHandle(log, FileMode.Append, FileAccess.Write, FileShare.ReadWrite | FileShare.Delete);
        ProcessSession.Detach(handle);
        return handle;
    }

    /// <summary>This lkrun as a command: the Native AOT binary itself, or the .NET host with the entry assembly.</summary>
    private static (string Program, string[] Prefix) Self()
    {
        var program = Environment.ProcessPath ?? throw NetworkException.Host("cannot tell where the lkrun binary is");
        return Path.GetFileNameWithoutExtension(program) == "dotnet" ? (program, [Environment.GetCommandLineArgs()[0]]) : (program, []);
    }

    private static string LastLine(string log)
    {
        try
        {
            var last = File.ReadLines(log).LastOrDefault(line => line.Trim().Length > 0);
            return last is null ? "" : $": {last.Trim()}";
        }
        catch (IOException)
        {
            return "";
        }
    }
}
