using System.Net;
using Lkrun.Spec;

namespace Lkrun.Spec.Tests;

public class FlagSyntaxTests
{
    private const string State = "/var/lib/vm-state";

    [Theory]
    [InlineData("disk.img", "/tmp/disk.img", null, DiskFormat.Raw)]
    [InlineData("file=disk.img,size=2G", "/tmp/disk.img", 2048L, DiskFormat.Raw)]
    [InlineData("file=disk.qcow2,format=qcow2", "/tmp/disk.qcow2", null, DiskFormat.Qcow2)]
    [InlineData("size=512M", "/var/lib/vm-state/disk.raw", 512L, DiskFormat.Raw)]
    [InlineData("size=100", "/var/lib/vm-state/disk.raw", 100L, DiskFormat.Raw)]
    [InlineData("disk.img,size=1g", "/tmp/disk.img", 1024L, DiskFormat.Raw)]
    public void Disk_values_parse_as_linuxkit_writes_them(string value, string path, long? sizeMiB, DiskFormat format)
    {
        var previous = Environment.CurrentDirectory;
        Environment.CurrentDirectory = "/tmp";
        try
        {
            Assert.Equal(new DiskSpec(path, sizeMiB, format), FlagSyntax.ParseDisk(value, State + "/disk.raw"));
        }
        finally
        {
            Environment.CurrentDirectory = previous;
        }
    }

    [Theory]
    [InlineData("size=abc", "bad size")]
    [InlineData("size=0", "bad size")]
    [InlineData("size=-5M", "bad size")]
    [InlineData("file=x,format=vmdk", "unknown format")]
    [InlineData("file=x,colour=red", "cannot parse")]
    [InlineData("format=raw", "give a file, a size, or both")]
    public void Bad_disk_values_name_the_flag(string value, string expected)
    {
        var error = Assert.Throws<SpecException>(() => FlagSyntax.ParseDisk(value, State + "/disk.raw"));
        Assert.StartsWith($"-disk {value}:", error.Message);
        Assert.Contains(expected, error.Message);
        Assert.Equal(2, error.ExitCode);
    }

    [Theory]
    [InlineData("2222:22", "127.0.0.1", 2222, 22, PortProtocol.Tcp)]
    [InlineData("2222:22/tcp", "127.0.0.1", 2222, 22, PortProtocol.Tcp)]
    [InlineData("5353:53/udp", "127.0.0.1", 5353, 53, PortProtocol.Udp)]
    [InlineData("0.0.0.0:8080:80", "0.0.0.0", 8080, 80, PortProtocol.Tcp)]
    [InlineData("[::1]:8080:80/tcp", "::1", 8080, 80, PortProtocol.Tcp)]
    public void Publish_values_parse(string value, string host, int hostPort, int guestPort, PortProtocol protocol)
    {
        Assert.Equal(new PublishedPort(IPAddress.Parse(host), hostPort, guestPort, protocol), FlagSyntax.ParsePublish(value));
    }

    [Theory]
    [InlineData("22")]
    [InlineData("2222:22/sctp")]
    [InlineData("0:22")]
    [InlineData("2222:70000")]
    [InlineData("a:b")]
    [InlineData("300.1.1.1:2222:22")]
    [InlineData("1:2:3:4")]
    public void Bad_publish_values_name_the_spec(string value)
    {
        var error = Assert.Throws<SpecException>(() => FlagSyntax.ParsePublish(value));
        Assert.StartsWith($"-publish {value}:", error.Message);
        Assert.Equal(2, error.ExitCode);
    }

    [Theory]
    [InlineData("2222:22", "127.0.0.1:2222:22/tcp")]
    [InlineData("[::1]:8080:80/udp", "[::1]:8080:80/udp")]
    public void Published_ports_print_in_the_flags_syntax(string value, string expected) =>
        Assert.Equal(expected, FlagSyntax.ParsePublish(value).ToString());

    [Fact]
    public void Vsock_ports_are_a_comma_list()
    {
        Assert.Equal([2374u, 5000u], FlagSyntax.ParseVsockPorts("2374,5000"));
    }

    [Theory]
    [InlineData("0")]
    [InlineData("abc")]
    [InlineData("70000")]
    [InlineData("1,,2")]
    [InlineData("-1")]
    public void Bad_vsock_ports_are_refused(string value)
    {
        var error = Assert.Throws<SpecException>(() => FlagSyntax.ParseVsockPorts(value).ToList());
        Assert.StartsWith($"-vsock-ports {value}:", error.Message);
    }

    [Theory]
    [InlineData("192.168.65.10")]
    [InlineData("10.0.0.1")]
    public void IPv4_addresses_parse(string value) => Assert.Equal(IPAddress.Parse(value), FlagSyntax.ParseIPv4(value));

    [Theory]
    [InlineData("192.168.65")]
    [InlineData("192.168.65.256")]
    [InlineData("::1")]
    [InlineData("host")]
    public void Bad_ip_values_are_refused(string value) =>
        Assert.StartsWith($"-ip {value}:", Assert.Throws<SpecException>(() => FlagSyntax.ParseIPv4(value)).Message);

    [Theory]
    [InlineData("10", 10L)]
    [InlineData("10M", 10L)]
    [InlineData("3G", 3072L)]
    [InlineData("", null)]
    [InlineData("G", null)]
    [InlineData("1.5G", null)]
    [InlineData("99999999999999999G", null)]
    public void Sizes_are_in_MiB(string text, long? expected) => Assert.Equal(expected, FlagSyntax.ParseSizeMiB(text));

    [Theory]
    [InlineData("/srv/share", 0, "/srv/share", "virtiofs0", false)]
    [InlineData("/srv/share,ro", 3, "/srv/share", "virtiofs3", true)]
    [InlineData("/srv/share,tag=data", 1, "/srv/share", "data", false)]
    [InlineData("/srv/share,ro,tag=data", 0, "/srv/share", "data", true)]
    public void Virtiofs_shares_take_a_tag_and_read_only(string value, int index, string path, string tag, bool readOnly) =>
        Assert.Equal(new SharedDirectorySpec(path, tag, readOnly), FlagSyntax.ParseVirtiofs(value, index));

    [Fact]
    public void Virtiofs_paths_are_made_absolute() =>
        Assert.Equal(Path.GetFullPath("share"), FlagSyntax.ParseVirtiofs("share", 0).Path);

    [Theory]
    [InlineData("")]
    [InlineData(",ro")]
    [InlineData("tag=x")]
    [InlineData("/srv,rw")]
    [InlineData("/srv,ro,ro")]
    [InlineData("/srv,tag=a,tag=b")]
    public void Bad_virtiofs_values_are_refused(string value)
    {
        var error = Assert.Throws<SpecException>(() => FlagSyntax.ParseVirtiofs(value, 0));
        Assert.StartsWith($"-virtiofs {value}:", error.Message);
        Assert.Equal(SpecErrorKind.Usage, error.Kind);
    }
}
