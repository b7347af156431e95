namespace Lkrun.Services.Network.Shared;

/// <summary>
/// Where Docker Desktop on macOS keeps its VPNKit sockets, under <c>~/Library/Containers/com.docker.docker/Data</c>:
/// <c>vpnkit.eth.sock</c> and <c>vpnkit.port.sock</c> since Docker for Mac 18.03, <c>s50</c> and <c>s51</c> before.
/// </summary>
public static class DockerDesktop
{
    public static IReadOnlyList<(string Ethernet, string Port)> Candidates(string home)
    {
        var data = Path.Combine(home, "Library", "Containers", "com.docker.docker", "Data");
        return
        [
            (Path.Combine(data, "vpnkit.eth.sock"), Path.Combine(data, "vpnkit.port.sock")),
            (Path.Combine(data, "s50"), Path.Combine(data, "s51")),
        ];
    }

    /// <summary>The first pair whose ethernet socket exists; a usage error naming every path looked at when none does.</summary>
    public static (string Ethernet, string Port) Find(string home)
    {
        var candidates = Candidates(home);
        foreach (var candidate in candidates)
        {
            if (File.Exists(candidate.Ethernet))
            {
                return candidate;
            }
        }
        throw NetworkException.Usage(
            $"-networking docker-for-mac: Docker Desktop's network socket is not there (looked at {string.Join(" and ", candidates.Select(c => c.Ethernet))}); start Docker Desktop or use another -networking");
    }
}
