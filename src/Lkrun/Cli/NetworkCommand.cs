using System.CommandLine;
using System.Globalization;
using System.Runtime.InteropServices;
using Lkrun.Services.Network;
using Lkrun.Services.Network.Leases;
using Lkrun.Services.Network.Shared;
using Lkrun.Services.Network.Shared.Ports;
using Lkrun.Spec;

namespace Lkrun.Cli;

/// <summary>
/// <c>lkrun network</c>: a shared network's service (<c>serve</c>) and its published ports (<c>publish</c>,
/// <c>unpublish</c>, <c>ls</c>, through its port socket). Flags take one dash or two.
/// </summary>
public sealed class NetworkCommand
{
    private readonly Option<string?> _ethernet = Flag("eth", "Path of the ethernet socket to listen on (VPNKit's protocol)", "PATH");
    private readonly Option<string?> _port = Flag("port", "Path of the network's port socket", "PATH");
    private readonly Option<string?> _idleExit = Flag(
        "idle-exit", "Stop once no VM has been attached for this many seconds (how -networking vpnkit runs its own network)", "SECONDS");
    private readonly Option<string?> _log = Flag("log", "Detach from the terminal and write to this file instead of stderr", "FILE");
    private readonly Option<string?> _ip = Flag("ip", "The guest address to forward to", "A.B.C.D");
    private readonly Argument<string?> _published = new("port") { Arity = ArgumentArity.ZeroOrOne, Description = "[HOSTIP:]HOSTPORT:GUESTPORT[/tcp|/udp]" };
    private readonly Argument<string?> _hostPort = new("port") { Arity = ArgumentArity.ZeroOrOne, Description = "[HOSTIP:]HOSTPORT[/tcp|/udp]" };

    public NetworkCommand()
    {
        var serve = new Command("serve", "Serve a shared network: an L2 switch between the VMs attached to ETH (VPNKit's ethernet protocol), with NAT, DHCP and DNS as on a VM's own network, and published ports through PORT. Runs until SIGTERM (or --idle-exit).");
        serve.Options.Add(_ethernet);
        serve.Options.Add(_port);
        serve.Options.Add(_idleExit);
        serve.Options.Add(_log);
        serve.SetAction((result, cancellation) => ServeAsync(result.GetValue(_ethernet), result.GetValue(_port), result.GetValue(_idleExit), result.GetValue(_log)));

        var publish = new Command("publish", "Publish a guest port of a VM on the network: HOSTIP:HOSTPORT on the host reaches GUESTPORT at --ip");
        publish.Options.Add(_port);
        publish.Options.Add(_ip);
        publish.Arguments.Add(_published);
        publish.SetAction(result => Publish(result.GetValue(_port), result.GetValue(_ip), result.GetValue(_published)));

        var unpublish = new Command("unpublish", "Stop publishing a host port");
        unpublish.Options.Add(_port);
        unpublish.Arguments.Add(_hostPort);
        unpublish.SetAction(result => Unpublish(result.GetValue(_port), result.GetValue(_hostPort)));

        var list = new Command("ls", "List the published ports");
        list.Options.Add(_port);
        list.SetAction(result => List(result.GetValue(_port)));

        Command = new Command("network", "Shared networks: serve one, and manage its published ports");
        Command.Subcommands.Add(serve);
        Command.Subcommands.Add(publish);
        Command.Subcommands.Add(unpublish);
        Command.Subcommands.Add(list);
    }

    public Command Command { get; }

    private static async Task<int> ServeAsync(string? ethernet, string? port, string? idleExitText, string? logPath)
    {
        TimeSpan? idleExit = null;
        if (ethernet is null || port is null)
        {
            return Usage($"missing {(ethernet is null ? "--eth" : "--port")}; see 'lkrun network serve --help'");
        }
        if (idleExitText is not null)
        {
            if (!double.TryParse(idleExitText, NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out var seconds) || seconds <= 0)
            {
                return Usage($"--idle-exit {idleExitText}: not a positive number of seconds");
            }
            idleExit = TimeSpan.FromSeconds(seconds);
        }
        using var log = logPath is null ? null : OpenLog(logPath);
        if (logPath is not null && log is null)
        {
            return 1;
        }
        Action<string> say = log is null ? line => Console.Error.WriteLine($"lkrun: {line}") : log.Write;

        SharedNetwork network;
        try
        {
            network = SharedNetwork.Start(new SharedNetworkOptions(
                Path.GetFullPath(ethernet), Path.GetFullPath(port), LeaseRegistry.ForCurrentUser(), idleExit, say));
        }
        catch (NetworkException e)
        {
            say(e.Message);
            return e.ExitCode;
        }
        var stop = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        Action<PosixSignalContext> onSignal = context =>
        {
            context.Cancel = true;
            stop.TrySetResult();
        };
        using var onTerminate = PosixSignalRegistration.Create(PosixSignal.SIGTERM, onSignal);
        using var onInterrupt = PosixSignalRegistration.Create(PosixSignal.SIGINT, onSignal);
        using var onHangUp = PosixSignalRegistration.Create(PosixSignal.SIGHUP, onSignal);
        await Task.WhenAny(stop.Task, network.Completion);
        await network.DisposeAsync();
        if (network.Completion.Exception?.InnerException is { } failure)
        {
            say(failure.Message);
            return 1;
        }
        say("stopped");
        return 0;
    }

    private static ServiceLog? OpenLog(string path)
    {
        try
        {
            return new ServiceLog(PrivateNetwork.Detach(Path.GetFullPath(path)));
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            Console.Error.WriteLine($"lkrun: --log {path}: {e.Message}");
            return null;
        }
    }

    private static int Publish(string? portSocket, string? ip, string? published)
    {
        if (portSocket is null || ip is null || published is null)
        {
            return Usage($"missing {(portSocket is null ? "--port" : ip is null ? "--ip" : "the port to publish")}; see 'lkrun network publish --help'");
        }
        ExposeRequest request;
        try
        {
            request = new ExposeRequest(FlagSyntax.ParsePublish(published, "publish"), FlagSyntax.ParseIPv4(ip));
        }
        catch (SpecException e)
        {
            return Usage(e.Message);
        }
        return Send(portSocket, request, response => { });
    }

    private static int Unpublish(string? portSocket, string? hostPort)
    {
        if (portSocket is null || hostPort is null)
        {
            return Usage($"missing {(portSocket is null ? "--port" : "the host port")}; see 'lkrun network unpublish --help'");
        }
        UnexposeRequest request;
        try
        {
            var (address, number, protocol) = FlagSyntax.ParseHostPort(hostPort, "unpublish");
            request = new UnexposeRequest(protocol, address, number);
        }
        catch (SpecException e)
        {
            return Usage(e.Message);
        }
        return Send(portSocket, request, response => { });
    }

    private static int List(string? portSocket)
    {
        if (portSocket is null)
        {
            return Usage("missing --port; see 'lkrun network ls --help'");
        }
        return Send(portSocket, new ListRequest(), response =>
        {
            foreach (var port in response.Ports ?? [])
            {
                Console.WriteLine(port);
            }
        });
    }

    private static int Send(string portSocket, PortRequest request, Action<PortResponse> onSuccess)
    {
        try
        {
            using var client = PortControlClient.Connect(Path.GetFullPath(portSocket));
            var response = client.Send(request);
            if (response.Error is { } error)
            {
                Console.Error.WriteLine($"lkrun: {error}");
                return 1;
            }
            onSuccess(response);
            return 0;
        }
        catch (NetworkException e)
        {
            Console.Error.WriteLine($"lkrun: {e.Message}");
            return e.ExitCode;
        }
    }

    private static int Usage(string message)
    {
        Console.Error.WriteLine($"lkrun: {message}");
        return 2;
    }

    private static Option<string?> Flag(string name, string description, string valueName) =>
        new("--" + name, "-" + name) { Description = description, HelpName = valueName };

    /// <summary>The detached service's log: one line per event, each with its time.</summary>
    private sealed class ServiceLog(Microsoft.Win32.SafeHandles.SafeFileHandle handle) : IDisposable
    {
        private readonly StreamWriter _writer = new(new FileStream(handle, FileAccess.Write)) { AutoFlush = true };
        private readonly Lock _gate = new();

        public void Write(string line)
        {
            lock (_gate)
            {
                _writer.WriteLine($"{DateTimeOffset.Now:yyyy-MM-ddTHH:mm:ss.fffzzz} {line}");
            }
        }

        public void Dispose() => _writer.Dispose();
    }
}
