using System.Security.Cryptography;
using Lkrun.Integration.Tests.Infrastructure;

namespace Lkrun.Integration.Tests.Metadata;

/// <summary>The metadata CD as the guest's own isofs reads it.</summary>
public sealed class MetadataTests : IDisposable
{
    private readonly Scratch _scratch = new();

    public void Dispose() => _scratch.Dispose();

    private string PoweroffGuest => _scratch.ImageWithExtraCmdline(TestImages.Guest, "lkrun.poweroff");

    private static string Line(string name, byte[] data) =>
        $"lkrun-guest: metadata {name} size={data.Length} sha256={Convert.ToHexStringLower(SHA256.HashData(data))}";

    public static TheoryData<string, int> DataFiles => new()
    {
        { "empty", 0 },
        { "one byte", 1 },
        { "one sector", 2048 },
        { "binary with NULs", 100_003 },
        { "64 MiB", 64 << 20 },
    };

    [Theory]
    [MemberData(nameof(DataFiles))]
    public async Task Data_file_reaches_the_guest_byte_for_byte(string description, int length)
    {
        var data = new byte[length];
        new Random(length).NextBytes(data);
        if (length > 10)
        {
            data[0] = 0;
            data[length / 2] = 0;
        }
        File.WriteAllBytes(_scratch["data"], data);
        await using var lkrun = LkrunProcess.Run(_scratch["state"], ["-mem", "256", "-data-file", _scratch["data"]], PoweroffGuest);
        Assert.True(0 == await lkrun.WaitForExitAsync(TimeSpan.FromMinutes(3)), description);
        Assert.Contains(Line("user-data", data), lkrun.Output);
        Assert.Contains(Line("config", data), lkrun.Output);
    }

    [Fact]
    public async Task A_fifo_as_data_file_is_read_once_and_reaches_the_guest()
    {
        var fifo = _scratch["fifo"];
        using (var mkfifo = System.Diagnostics.Process.Start("mkfifo", [fifo]))
        {
            await mkfifo.WaitForExitAsync(TestContext.Current.CancellationToken);
        }
        var data = new byte[300_000];
        new Random(7).NextBytes(data);
        await using var lkrun = LkrunProcess.Run(_scratch["state"], ["-mem", "256", "-data-file", fifo], PoweroffGuest);
        // One writer, as a shell's `lkrun run -data-file fifo & cat data > fifo` gives: it is done once one reader took it all.
        await File.WriteAllBytesAsync(fifo, data, TestContext.Current.CancellationToken);
        Assert.Equal(0, await lkrun.WaitForExitAsync(TimeSpan.FromMinutes(3)));
        Assert.Contains(Line("user-data", data), lkrun.Output);
    }

    [Fact]
    public async Task Data_string_and_instance_id_reach_the_guest()
    {
        const string text = "{\"hostname\": \"lkrun-test\", \"motd\": \"héllo\"}";
        await using var lkrun = LkrunProcess.Run(_scratch["state"], ["-mem", "256", "-data", text], PoweroffGuest);
        Assert.Equal(0, await lkrun.WaitForExitAsync());
        Assert.Contains(Line("user-data", System.Text.Encoding.UTF8.GetBytes(text)), lkrun.Output);
        var uuid = File.ReadAllText(Path.Combine(_scratch["state"], "vpnkit.uuid")).Trim();
        Assert.Contains($"lkrun-guest: meta-data instance-id: {uuid}", lkrun.Output, StringComparison.OrdinalIgnoreCase);
        Assert.True(File.Exists(Path.Combine(_scratch["state"], "data.iso")));
    }

    [Fact]
    public async Task A_user_data_script_runs_in_the_guest()
    {
        await using var lkrun = LkrunProcess.Run(_scratch["state"], ["-mem", "256", "-data", "#!/bin/sh\necho script-says-$((6*7))\nexit 3\n"], PoweroffGuest);
        Assert.Equal(0, await lkrun.WaitForExitAsync());
        Assert.Contains("script-says-42", lkrun.Output);
        Assert.Contains("lkrun-guest: user-data exit 3", lkrun.Output);
    }

    [Fact]
    public async Task The_demo_kernel_reads_the_metadata_cd_too()
    {
        var image = _scratch.ImageWithExtraCmdline(TestImages.Demo, "lkrun.poweroff");
        await using var lkrun = LkrunProcess.Run(_scratch["state"], ["-mem", "512", "-data", "demo-data"], image);
        Assert.Equal(0, await lkrun.WaitForExitAsync(TimeSpan.FromMinutes(3)));
        Assert.Contains(Line("user-data", "demo-data"u8.ToArray()), lkrun.Output);
    }

    [Fact]
    public async Task An_unreadable_data_file_is_named_and_nothing_is_created()
    {
        await using var lkrun = LkrunProcess.Run(_scratch["state"], ["-data-file", _scratch["absent"]], PoweroffGuest);
        Assert.Equal(1, await lkrun.WaitForExitAsync(TimeSpan.FromSeconds(20)));
        Assert.Contains($"-data-file {_scratch["absent"]}: cannot read it", lkrun.Error);
        Assert.False(Directory.Exists(_scratch["state"]));
    }
}
