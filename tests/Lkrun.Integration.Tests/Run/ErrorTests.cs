using Lkrun.Integration.Tests.Infrastructure;

namespace Lkrun.Integration.Tests.Run;

/// <summary>Bad input through the real binary: one line, the right exit code, and nothing created.</summary>
public sealed class ErrorTests : IDisposable
{
    private readonly Scratch _scratch = new();

    public void Dispose() => _scratch.Dispose();

    public static TheoryData<string[], int, string> Cases => new()
    {
        { ["-bogus"], 2, "unknown flag -bogus" },
        { ["-mem", "many"], 2, "-mem many: not a whole number" },
        { ["--cpus=0"], 2, "-cpus 0: must be from 1" },
        { ["-networking", "bridge"], 2, "-networking bridge: unknown mode" },
        { ["-squashfs", "-iso"], 2, "-squashfs and -iso ask for different boot methods" },
        { ["-data", "x", "-data-file", "/etc/hostname"], 2, "-data and -data-file cannot both be given" },
        { ["-qemu", "/nonexistent/qemu"], 1, "-qemu /nonexistent/qemu: no such file" },
        { ["-vsock-ports", "0"], 2, "-vsock-ports 0: '0' is not a port from 1 to 65535" },
        { ["-vsock-ports", "abc"], 2, "-vsock-ports abc: 'abc' is not a port" },
        { ["-vsock-ports", "70000"], 2, "-vsock-ports 70000: '70000' is not a port" },
        { ["-vsock-ports", "2374,5000", "-vsock-ports", "2374"], 2, "-vsock-ports 2374: given twice" },
        { ["--name", "a/b"], 2, "--name a/b: must start with a letter or digit" },
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public async Task Bad_flags_fail_with_one_line_and_create_nothing(string[] flags, int exitCode, string message)
    {
        var image = _scratch.ImageWithCmdline(TestImages.Guest, "console=ttyS0");
        var before = Directory.GetFileSystemEntries(_scratch.Path).Order().ToList();
        await using var lkrun = LkrunProcess.Run(_scratch["state"], flags, image);
        Assert.Equal(exitCode, await lkrun.WaitForExitAsync(TimeSpan.FromSeconds(20)));
        Assert.Contains(message, lkrun.Error);
        Assert.Single(lkrun.Error.TrimEnd('\n').Split('\n'));
        Assert.Equal(before, Directory.GetFileSystemEntries(_scratch.Path).Order().ToList());
    }

    [Theory]
    [InlineData("-kernel")]
    [InlineData("-initrd.img")]
    [InlineData("-cmdline")]
    public async Task Each_missing_image_file_is_named_with_exit_code_1(string missing)
    {
        var image = _scratch.ImageWithCmdline(TestImages.Guest, "console=ttyS0");
        File.Delete(image + missing);
        await using var lkrun = LkrunProcess.Run(_scratch["state"], ["-kernel"], image);
        Assert.Equal(1, await lkrun.WaitForExitAsync(TimeSpan.FromSeconds(20)));
        Assert.Contains($"missing {image}{missing}", lkrun.Error);
        Assert.False(Directory.Exists(_scratch["state"]));
    }

    [Fact]
    public async Task A_busy_port_is_reported_alone_before_any_notice_about_the_vm()
    {
        // Software emulation is announced only once a VM will start; a usage error comes first and alone.
        using var taken = new System.Net.Sockets.Socket(System.Net.Sockets.AddressFamily.InterNetwork, System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Tcp);
        taken.Bind(new System.Net.IPEndPoint(System.Net.IPAddress.Loopback, 0));
        taken.Listen(1);
        var port = ((System.Net.IPEndPoint)taken.LocalEndPoint!).Port;
        var before = Directory.GetFileSystemEntries(_scratch.Path).Order().ToList();
        await using var lkrun = LkrunProcess.Run(_scratch["state"], ["-publish", $"{port}:80"], TestImages.Guest);
        Assert.Equal(2, await lkrun.WaitForExitAsync(TimeSpan.FromSeconds(20)));
        Assert.Equal($"lkrun: -publish 127.0.0.1:{port}:80/tcp: tcp port 127.0.0.1:{port} is already in use on this host\n", lkrun.Error);
        Assert.Equal(before, Directory.GetFileSystemEntries(_scratch.Path).Order().ToList());
    }
}
