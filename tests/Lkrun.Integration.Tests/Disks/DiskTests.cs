using Lkrun.Integration.Tests.Infrastructure;

namespace Lkrun.Integration.Tests.Disks;

public sealed class DiskTests : IDisposable
{
    private readonly Scratch _scratch = new();

    public void Dispose() => _scratch.Dispose();

    private string PoweroffGuest => _scratch.ImageWithExtraCmdline(TestImages.Guest, "lkrun.poweroff");

    [Fact]
    public async Task The_guest_sees_each_disk_at_its_size_in_command_line_order()
    {
        var existing = _scratch["existing.raw"];
        File.WriteAllBytes(existing, new byte[8 * 1024 * 1024]);
        await using var lkrun = LkrunProcess.Run(_scratch["state"],
            ["-mem", "256", "-disk", "size=64M", "-disk", $"file={existing}", "-disk", "size=1G,format=qcow2", "-disk", $"{_scratch["new.raw"]},size=16"],
            PoweroffGuest);
        Assert.Equal(0, await lkrun.WaitForExitAsync());
        Assert.Contains($"lkrun-guest: disk vda {64L << 20} rw", lkrun.Output);
        Assert.Contains($"lkrun-guest: disk vdb {8L << 20} rw", lkrun.Output);
        Assert.Contains($"lkrun-guest: disk vdc {1L << 30} rw", lkrun.Output);
        Assert.Contains($"lkrun-guest: disk vdd {16L << 20} rw", lkrun.Output);
        Assert.Equal(64L << 20, new FileInfo(Path.Combine(_scratch["state"], "disk.raw")).Length);
        Assert.True(File.Exists(Path.Combine(_scratch["state"], "disk2.raw")));
        Assert.Equal(16L << 20, new FileInfo(_scratch["new.raw"]).Length);
    }

    [Fact]
    public async Task Data_written_by_the_guest_survives_a_sigterm_and_a_new_boot()
    {
        const string written = "lkrun-persisted-7d3f";
        await using (var first = LkrunProcess.Run(_scratch["state"],
            ["-mem", "256", "-disk", "size=8M", "-data", $"#!/bin/sh\nprintf {written} | dd of=/dev/vda conv=fsync 2>/dev/null\n"],
            TestImages.Guest))
        {
            await first.WaitForOutputAsync("lkrun-guest: user-data exit 0");
            await first.SignalAsync(Posix.SIGTERM);
            Assert.Equal(0, await first.WaitForExitAsync());
        }
        await using var second = LkrunProcess.Run(_scratch["state"],
            ["-mem", "256", "-disk", "size=8M", "-data", $"#!/bin/sh\necho \"read back: $(head -c {written.Length} /dev/vda)\"\n"],
            PoweroffGuest);
        Assert.Equal(0, await second.WaitForExitAsync());
        Assert.Contains($"read back: {written}", second.Output);
    }

    [Fact]
    public async Task An_existing_disk_of_another_size_is_used_as_it_is_with_one_warning()
    {
        var disk = _scratch["small.raw"];
        File.WriteAllBytes(disk, new byte[4 * 1024 * 1024]);
        await using var lkrun = LkrunProcess.Run(_scratch["state"], ["-mem", "256", "-disk", $"{disk},size=1G"], PoweroffGuest);
        Assert.Equal(0, await lkrun.WaitForExitAsync());
        Assert.Contains($"-disk {disk}: the file has 4 MiB, not the 1024 MiB asked for; it is used as it is", lkrun.Error);
        Assert.Contains($"lkrun-guest: disk vda {4L << 20} rw", lkrun.Output);
        Assert.Equal(4L << 20, new FileInfo(disk).Length);
    }

    [Theory]
    [InlineData("/nonexistent-dir/disk.raw,size=1G", "directory /nonexistent-dir does not exist", 1)]
    [InlineData("nothing-here.raw", "no such file, and no size=N to create it with", 2)]
    [InlineData("size=12X", "bad size '12X'", 2)]
    public async Task Bad_disks_are_refused_before_anything_is_created(string disk, string message, int exitCode)
    {
        await using var lkrun = LkrunProcess.Run(_scratch["state"], ["-disk", disk], PoweroffGuest);
        Assert.Equal(exitCode, await lkrun.WaitForExitAsync(TimeSpan.FromSeconds(20)));
        Assert.Contains(message, lkrun.Error);
        Assert.False(Directory.Exists(_scratch["state"]));
    }
}
