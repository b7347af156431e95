using System.Diagnostics;

namespace Lkrun.Integration.Tests.Infrastructure;

/// <summary>
/// The test guest's root shell through the real OpenSSH client, with a key made for the test. The guest learns
/// the key from its user-data (<see cref="AuthorizingUserData"/>); the SSH port is a published port.
/// </summary>
public sealed class GuestSsh
{
    private readonly string _key;

    private GuestSsh(string key, string publicKey)
    {
        _key = key;
        AuthorizingUserData = $"#!/bin/sh\necho '{publicKey}' > /root/.ssh/authorized_keys\n";
    }

    /// <summary>A user-data script that authorizes the key for root.</summary>
    public string AuthorizingUserData { get; }

    /// <summary>Makes a new key pair at <paramref name="keyPath"/>.</summary>
    public static async Task<GuestSsh> CreateKeyAsync(string keyPath)
    {
        await RunAsync("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "lkrun-test", "-f", keyPath);
        return new GuestSsh(keyPath, File.ReadAllText(keyPath + ".pub").Trim());
    }

    /// <summary>Runs a shell command in the guest as root@<paramref name="host"/> and returns its output; a failure fails the test.</summary>
    public Task<string> RunAsync(int port, string command, string host = "127.0.0.1") =>
        RunAsync(
            "ssh", "-p", $"{port}", "-i", _key, "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
            "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=30", $"root@{host}", command);

    private static async Task<string> RunAsync(string program, params string[] args)
    {
        using var process = Process.Start(new ProcessStartInfo(program, args)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
        })!;
        process.StandardInput.Close();
        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEndAsync();
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(TestContext.Current.CancellationToken);
        timeout.CancelAfter(TimeSpan.FromMinutes(3));
        await process.WaitForExitAsync(timeout.Token);
        Assert.True(process.ExitCode == 0, $"{program} exited {process.ExitCode}: {await error}");
        return await output;
    }
}
