using Lkrun.Services.Processes;
using Lkrun.Services.Hosting;
using Lkrun.Services.Interop;
using Lkrun.Services.State;
using Lkrun.Spec;

namespace Lkrun.Services.Virtiofs;

/// <summary>
/// The <c>-virtiofs</c> shares of a QEMU VM: one virtiofsd per share, each a vhost-user backend on
/// <c>virtiofsN.sock</c> in the state dir, logging to <c>virtiofsN.log</c>, running from <see cref="StartAsync"/>
/// until <see cref="DisposeAsync"/>. lkrun binds and listens on each socket itself (mode 0600) and hands it to its
/// virtiofsd, so QEMU finds it listening as soon as the services have started.
/// </summary>
public sealed class VirtiofsShares : IAsyncDisposable
{
    /// <summary>How long a virtiofsd may take to wait for QEMU; it takes milliseconds.</summary>
    private static readonly TimeSpan StartupTimeout = TimeSpan.FromSeconds(30);

    /// <summary>What virtiofsd prints once it has parsed its options and waits for QEMU on the socket.</summary>
    private const string VirtiofsdReadyLine = "Waiting for vhost-user socket connection";

    /// <summary>How many of virtiofsd's last lines an error message quotes.</summary>
    private const int VirtiofsdLinesKept = 4;

    private readonly List<(SharedDirectorySpec Share, ChildProcess Process, string Socket)> _running = [];
    private readonly TaskCompletionSource _completion = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private volatile bool _stopping;

    private VirtiofsShares()
    {
    }

    /// <summary>The sockets QEMU's vhost-user-fs devices connect to, in the order of the shares.</summary>
    public IReadOnlyList<SharedDirectoryAttachment> Attachments =>
        [.. _running.Select(running => new SharedDirectoryAttachment(running.Share.Tag, running.Socket))];

    /// <summary>
    /// Faults with one line naming the share when a virtiofsd fails while the VM runs: killed, or exited with an
    /// error. One that exits cleanly has seen QEMU close its socket, which only happens when the VM ends.
    /// </summary>
    public Task Completion => _completion.Task;

    /// <summary>Checks, creating nothing, that lkrun can serve <paramref name="shares"/>: the binary and the count.</summary>
    public static Virtiofsd Check(IReadOnlyList<SharedDirectorySpec> shares)
    {
        if (shares.Count > StateLayout.MaxVirtiofsShares)
        {
            throw SpecException.Usage($"-virtiofs: at most {StateLayout.MaxVirtiofsShares} shares, not {shares.Count}");
        }
        return Virtiofsd.Find();
    }

    /// <summary>
    /// Starts a virtiofsd for each share and waits until each waits for QEMU. When one fails, those started are
    /// stopped and the error names the share with what its virtiofsd said.
    /// </summary>
    public static async Task<VirtiofsShares> StartAsync(
        Virtiofsd virtiofsd, IReadOnlyList<SharedDirectorySpec> shares, StateLayout layout, CancellationToken cancellation)
    {
        var service = new VirtiofsShares();
        try
        {
            for (var i = 0; i < shares.Count; i++)
            {
                service.StartOne(virtiofsd, shares[i], layout.VirtiofsSocket(i), layout.VirtiofsLog(i));
            }
            foreach (var (share, process, _) in service._running)
            {
                await WaitUntilReadyAsync(share, process, cancellation);
            }
            foreach (var (share, process, _) in service._running)
            {
                _ = process.Exited.ContinueWith(
                    exited => service.OnExited(share, process, exited.Result),
                    CancellationToken.None,
                    TaskContinuationOptions.OnlyOnRanToCompletion | TaskContinuationOptions.ExecuteSynchronously,
                    TaskScheduler.Default);
            }
            return service;
        }
        catch
        {
            await service.DisposeAsync();
            throw;
        }
    }

    /// <summary>Stops every virtiofsd (the VM has ended, so none has work left) and removes the sockets.</summary>
    public async ValueTask DisposeAsync()
    {
        _stopping = true;
        foreach (var (_, process, socket) in _running)
        {
            process.Kill();
            await process.Exited;
            File.Delete(socket);
        }
        _running.Clear();
        _completion.TrySetResult();
    }

    private void StartOne(Virtiofsd virtiofsd, SharedDirectorySpec share, string socket, string log)
    {
        using var listening = UnixSocket.Listen(socket, UnixSocket.OwnerOnlyMode, backlog: 1);
        try
        {
            // virtiofsd accepts QEMU with a blocking accept() on the descriptor it inherits; lkrun's copy closes here.
            UnixSocket.SetNonBlocking(listening.Number, nonBlocking: false);
            LibC.Check(LibC.fcntl(listening.Number, LibC.F_SETFD, 0), "fcntl F_SETFD");
            _running.Add((share, StartVirtiofsd(VirtiofsdCommand.Build(virtiofsd, share, listening.Number), log), socket));
        }
        catch
        {
            File.Delete(socket);
            throw;
        }
    }

    private static async Task WaitUntilReadyAsync(SharedDirectorySpec share, ChildProcess process, CancellationToken cancellation)
    {
        var outcome = await Task.WhenAny(process.Ready, process.Exited, Task.Delay(StartupTimeout, cancellation));
        if (outcome == process.Ready)
        {
            return;
        }
        cancellation.ThrowIfCancellationRequested();
        var what = outcome == process.Exited
            ? $"-virtiofs {share.Path}: virtiofsd failed to start (exit code {await process.Exited})"
            : $"-virtiofs {share.Path}: virtiofsd did not start within {StartupTimeout.TotalSeconds:0} s";
        throw new VirtiofsException(process.Describe(what));
    }

    private void OnExited(SharedDirectorySpec share, ChildProcess process, int exitCode)
    {
        if (!_stopping && exitCode != 0)
        {
            _completion.TrySetException(new VirtiofsException(process.Describe($"the virtiofsd of -virtiofs {share.Path} stopped (exit code {exitCode})")));
        }
    }

    /// <summary>Starts virtiofsd's argv (the program first, maybe behind unshare and sh).</summary>
    private static ChildProcess StartVirtiofsd(IReadOnlyList<string> argv, string log) =>
        ChildProcess.Start(argv[0], argv.Skip(1).ToList(), log, VirtiofsdLinesKept, reason => new VirtiofsException($"cannot start virtiofsd: {reason}"), VirtiofsdReadyLine);
}
