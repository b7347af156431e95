using System.Net;
using System.Text;
using Lkrun.Services.Network.Shared.Ports;
using Lkrun.Spec;

namespace Lkrun.Services.Tests.Network.Shared.Ports;

public sealed class PortControlTests
{
    private static readonly PublishedPort Http = new(IPAddress.Loopback, 8080, 80, PortProtocol.Tcp);
    private static readonly IPAddress Guest = IPAddress.Parse("192.168.65.3");

    private static PortRequest Decode(string line) => PortControl.DecodeRequest(Encoding.UTF8.GetBytes(line));

    [Fact]
    public void Requests_are_the_documented_json_lines_and_read_back_as_they_were()
    {
        var expose = new ExposeRequest(Http with { Protocol = PortProtocol.Udp }, Guest);
        Assert.Equal(
            """{"request":"expose","protocol":"udp","hostAddress":"127.0.0.1","hostPort":8080,"guestAddress":"192.168.65.3","guestPort":80}""",
            PortControl.Encode(expose));
        Assert.Equal(expose, Decode(PortControl.Encode(expose)));
        var unexpose = new UnexposeRequest(PortProtocol.Tcp, IPAddress.Any, 8080);
        Assert.Equal("""{"request":"unexpose","protocol":"tcp","hostAddress":"0.0.0.0","hostPort":8080}""", PortControl.Encode(unexpose));
        Assert.Equal(unexpose, Decode(PortControl.Encode(unexpose)));
        Assert.Equal("""{"request":"list"}""", PortControl.Encode(new ListRequest()));
        Assert.IsType<ListRequest>(Decode("""{ "request" : "list" }"""));
    }

    [Fact]
    public void Answers_are_ok_an_error_or_the_list_and_read_back_as_they_were()
    {
        Assert.Equal("""{"ok":true}""", PortControl.EncodeResponse(PortResponse.Ok));
        Assert.Equal("""{"ok":false,"error":"no"}""", PortControl.EncodeResponse(new PortResponse("no")));
        var list = new PortResponse(null, [new ExposedPort(Http, Guest)]);
        var line = PortControl.EncodeResponse(list);
        Assert.Equal(
            """{"ok":true,"ports":[{"protocol":"tcp","hostAddress":"127.0.0.1","hostPort":8080,"guestAddress":"192.168.65.3","guestPort":80}]}""",
            line);
        var read = PortControl.DecodeResponse(Encoding.UTF8.GetBytes(line));
        Assert.Null(read.Error);
        Assert.Equal([new ExposedPort(Http, Guest)], read.Ports);
        Assert.Equal("tcp 127.0.0.1:8080 -> 192.168.65.3:80", read.Ports![0].ToString());
        Assert.Equal("no", PortControl.DecodeResponse(Encoding.UTF8.GetBytes("""{"ok":false,"error":"no"}""")).Error);
    }

    public static TheoryData<string, string> BadRequests => new()
    {
        { "", "the request is not valid JSON for this protocol" },
        { "not json", "the request is not valid JSON for this protocol" },
        { "[1,2,3]", "the request is not valid JSON for this protocol" },
        { "null", "the request is null" },
        { "{}", "the request names no request" },
        { """{"request":"shutdown"}""", "unknown request 'shutdown' (expose, unexpose or list)" },
        { """{"request":"list","extra":1}""", "the request is not valid JSON for this protocol" },
        { """{"request":7}""", "the request is not valid JSON for this protocol" },
        { """{"request":"expose","hostAddress":"127.0.0.1","hostPort":8080,"guestAddress":"192.168.65.3","guestPort":80}""", "protocol is missing (tcp or udp)" },
        { """{"request":"expose","protocol":"sctp","hostAddress":"127.0.0.1","hostPort":8080,"guestAddress":"192.168.65.3","guestPort":80}""", "unknown protocol 'sctp' (tcp or udp)" },
        { """{"request":"expose","protocol":"tcp","hostAddress":"::1","hostPort":8080,"guestAddress":"192.168.65.3","guestPort":80}""", "hostAddress '::1' is not an IPv4 address" },
        { """{"request":"expose","protocol":"tcp","hostAddress":"127.1","hostPort":8080,"guestAddress":"192.168.65.3","guestPort":80}""", "hostAddress '127.1' is not an IPv4 address" },
        { """{"request":"expose","protocol":"tcp","hostAddress":"127.0.0.1","hostPort":0,"guestAddress":"192.168.65.3","guestPort":80}""", "hostPort 0 is not a port from 1 to 65535" },
        { """{"request":"expose","protocol":"tcp","hostAddress":"127.0.0.1","hostPort":8080,"guestAddress":"192.168.65.3","guestPort":70000}""", "guestPort 70000 is not a port from 1 to 65535" },
        { """{"request":"expose","protocol":"tcp","hostAddress":"127.0.0.1","hostPort":8080,"guestPort":80}""", "guestAddress is missing" },
        { """{"request":"unexpose","protocol":"tcp","hostAddress":"127.0.0.1"}""", "hostPort is missing" },
        { """{"request":"expose","protocol":"tcp","hostAddress":"127.0.0.1","hostPort":99999999999,"guestAddress":"192.168.65.3","guestPort":80}""", "the request is not valid JSON for this protocol" },
        { new string('[', 5000), "the request is not valid JSON for this protocol" },
    };

    [Theory]
    [MemberData(nameof(BadRequests))]
    public void Requests_that_are_not_this_protocols_are_refused_with_one_line(string line, string reason)
    {
        var error = Assert.Throws<PortControlException>(() => Decode(line));
        Assert.StartsWith(reason, error.Message);
        Assert.DoesNotContain('\n', error.Message);
    }

    [Theory]
    [InlineData("{}")]
    [InlineData("""{"ok":true,"error":"both"}""")]
    [InlineData("""{"ok":false}""")]
    [InlineData("Rerror")]
    public void Answers_that_are_not_this_protocols_are_refused(string line)
    {
        Assert.Throws<PortControlException>(() => PortControl.DecodeResponse(Encoding.UTF8.GetBytes(line)));
    }
}
