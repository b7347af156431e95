using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;
using Lkrun.Control;
using Lkrun.Services.State;
using Lkrun.Spec;

namespace Lkrun.Cli;

/// <summary>One VM as <c>lkrun ps</c> shows it.</summary>
public sealed record VmListing(
    string Name,
    string State,
    string Engine,
    int? Pid,
    string StateDirectory,
    string? Address,
    IReadOnlyList<string> PublishedPorts,
    IReadOnlyList<string> VsockSockets,
    long? UptimeSeconds,
    string? LastRun);

[JsonSourceGenerationOptions(WriteIndented = true, PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase)]
[JsonSerializable(typeof(List<VmListing>))]
internal sealed partial class PsJson : JsonSerializerContext;

/// <summary>
/// <c>lkrun ps [--json]</c>: every VM of this user that lkrun knows, running or not. A running VM's lkrun is asked
/// over its control API (published ports change while it runs); a stopped VM is described from its state dir.
/// </summary>
public sealed class PsCommand
{
    private readonly Option<bool> _json = VmCommand.Flag<bool>("json", "Print the list as JSON");

    public PsCommand()
    {
        Command = new Command("ps", "List the VMs of this user: name, state (running, stopped, crashed), engine, pid, address, ports, uptime");
        Command.Options.Add(_json);
        Command.SetAction((result, cancellation) => ListAsync(result.GetValue(_json), cancellation));
    }

    public Command Command { get; }

    private static async Task<int> ListAsync(bool json, CancellationToken cancellation)
    {
        List<VmListing> listings = [];
        try
        {
            foreach (var vm in VmRegistry.ForCurrentUser().List())
            {
                listings.Add(await DescribeAsync(vm, cancellation));
            }
        }
        catch (Exception e) when (e is IOException or InvalidDataException or UnauthorizedAccessException)
        {
            return VmCommand.Fail(e.Message, 1);
        }
        System.Console.Out.Write(json ? JsonSerializer.Serialize(listings, PsJson.Default.ListVmListing) + "\n" : Table(listings));
        return 0;
    }

    public static async Task<VmListing> DescribeAsync(RegisteredVm vm, CancellationToken cancellation)
    {
        var layout = new StateLayout(vm.StateDirectory);
        var status = VmStatus.Of(vm.StateDirectory);
        if (status.State == VmState.Running && await InspectAsync(layout, cancellation) is { } live)
        {
            return new VmListing(
                vm.Name,
                live.State switch
                {
                    "VirtualMachineStatePaused" => "paused",
                    "VirtualMachineStateStopping" => "stopping",
                    _ => "running",
                },
                live.Engine,
                live.Pid,
                vm.StateDirectory,
                live.Address,
                live.PublishedPorts,
                [.. live.VsockSockets.Select(socket => socket.SocketUrl)],
                (long)(DateTimeOffset.UtcNow - live.StartedAt).TotalSeconds,
                null);
        }
        var spec = ReadSpec(layout);
        return new VmListing(
            vm.Name,
            status.Word,
            spec is null ? "" : RunCommand.BackendName(spec.Engine.Kind),
            status.Pid,
            vm.StateDirectory,
            ReadAddress(layout),
            spec is null ? [] : [.. spec.Network.PublishedPorts.Select(port => port.ToString())],
            spec is null ? [] : [.. spec.VsockPorts.Select(layout.GuestVsockSocket)],
            null,
            status.LastRun?.Ending);
    }

    /// <summary>The running VM as its control API describes it; null while it does not answer (still starting).</summary>
    private static async Task<VmInspection?> InspectAsync(StateLayout layout, CancellationToken cancellation)
    {
        try
        {
            using var client = new ControlClient(layout.ControlSocket, TimeSpan.FromSeconds(3));
            return await client.InspectAsync(cancellation);
        }
        catch (Exception e) when (e is HttpRequestException or ControlException or TaskCanceledException or JsonException)
        {
            return null;
        }
    }

    private static VmSpec? ReadSpec(StateLayout layout)
    {
        try
        {
            return VmSpecJson.Deserialize(File.ReadAllText(layout.Spec));
        }
        catch (Exception e) when (e is IOException or JsonException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    private static string? ReadAddress(StateLayout layout)
    {
        try
        {
            return File.ReadAllText(layout.Address).Trim();
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    private static string Table(IReadOnlyList<VmListing> listings)
    {
        string[] header = ["NAME", "STATE", "ENGINE", "PID", "ADDRESS", "PORTS", "VSOCK", "UPTIME", "STATE DIR"];
        var rows = listings.Select(vm => new[]
        {
            vm.Name,
            vm.State,
            vm.Engine,
            vm.State is "running" or "paused" or "stopping" && vm.Pid is { } pid ? pid.ToString(CultureInfo.InvariantCulture) : "-",
            vm.Address ?? "-",
            vm.PublishedPorts.Count == 0 ? "-" : string.Join(',', vm.PublishedPorts),
            vm.VsockSockets.Count == 0 ? "-" : string.Join(',', vm.VsockSockets.Select(Path.GetFileName)),
            vm.UptimeSeconds is { } uptime ? FormatUptime(uptime) : "-",
            vm.StateDirectory,
        }).ToList();
        var widths = header.Select((title, column) => rows.Select(row => row[column].Length).Append(title.Length).Max()).ToArray();
        var lines = new[] { header }.Concat(rows)
            .Select(row => string.Join("  ", row.Select((cell, column) => column == row.Length - 1 ? cell : cell.PadRight(widths[column]))).TrimEnd());
        return string.Join('\n', lines) + "\n";
    }

    public static string FormatUptime(long seconds) => seconds switch
    {
        < 60 => $"{seconds}s",
        < 3600 => $"{seconds / 60}m{seconds % 60:00}s",
        < 86400 => $"{seconds / 3600}h{seconds % 3600 / 60:00}m",
        _ => $"{seconds / 86400}d{seconds % 86400 / 3600:00}h",
    };
}
