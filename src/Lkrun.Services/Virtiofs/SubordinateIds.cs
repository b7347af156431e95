using System.Globalization;

namespace Lkrun.Services.Virtiofs;

/// <summary>
/// The user and group ids a user may map into a user namespace besides their own (<c>/etc/subuid</c> and
/// <c>/etc/subgid</c>, applied by shadow's setuid <c>newuidmap</c> and <c>newgidmap</c>). virtiofsd's namespace
/// maps lkrun's user to root and these ranges to ids 1 and up, so the guest's other users own files too.
/// </summary>
public sealed record SubordinateIds(long UidStart, long UidCount, long GidStart, long GidCount)
{
    public const string UidFile = "/etc/subuid";
    public const string GidFile = "/etc/subgid";

    /// <summary>
    /// The first range of each file that belongs to <paramref name="user"/> (by name or uid), or null when either
    /// file has none. Lines are <c>owner:start:count</c>; others are skipped, as newuidmap skips them.
    /// </summary>
    public static SubordinateIds? Parse(string user, uint uid, string subuid, string subgid) =>
        FirstRange(user, uid, subuid) is { } uids && FirstRange(user, uid, subgid) is { } gids
            ? new SubordinateIds(uids.Start, uids.Count, gids.Start, gids.Count)
            : null;

    private static (long Start, long Count)? FirstRange(string user, uint uid, string text)
    {
        foreach (var line in text.Split('\n', StringSplitOptions.TrimEntries))
        {
            var fields = line.Split(':');
            if (fields.Length == 3
                && (fields[0] == user || fields[0] == uid.ToString(CultureInfo.InvariantCulture))
                && long.TryParse(fields[1], NumberStyles.None, CultureInfo.InvariantCulture, out var start)
                && long.TryParse(fields[2], NumberStyles.None, CultureInfo.InvariantCulture, out var count)
                && count > 0)
            {
                return (start, count);
            }
        }
        return null;
    }
}
