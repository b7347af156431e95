using System.Globalization;

namespace Lkrun.Services.Faults;

/// <summary>
/// A test hook that makes a long-running host service fail on purpose, so tests can see that lkrun notices a
/// service that dies while its VM runs. <c>LKRUN_FAULT=vsock=5,network=8</c> makes the vsock device's worker fail
/// 5 s after it started and the network's 8 s after it started. Unset (always, outside tests), it costs one
/// comparison per turn of a service's loop.
/// </summary>
public static class FaultInjection
{
    public const string EnvironmentVariable = "LKRUN_FAULT";

    private static readonly IReadOnlyDictionary<string, TimeSpan> Faults = Parse(Environment.GetEnvironmentVariable(EnvironmentVariable));

    /// <summary>How long after its start <paramref name="service"/> is to fail; null when it is not.</summary>
    public static TimeSpan? DelayFor(string service) => Faults.TryGetValue(service, out var delay) ? delay : null;

    /// <summary>The clock time (<see cref="Environment.TickCount64"/>) at which a service started now is to fail, or null.</summary>
    public static long? DeadlineFor(string service) =>
        DelayFor(service) is { } delay ? Environment.TickCount64 + (long)delay.TotalMilliseconds : null;

    /// <summary>Throws <see cref="InjectedFaultException"/> once <paramref name="deadline"/> (from <see cref="DeadlineFor"/>) has passed.</summary>
    public static void ThrowIfDue(string service, long? deadline)
    {
        if (deadline is { } due && Environment.TickCount64 >= due)
        {
            throw new InjectedFaultException(service);
        }
    }

    internal static IReadOnlyDictionary<string, TimeSpan> Parse(string? text)
    {
        var faults = new Dictionary<string, TimeSpan>(StringComparer.Ordinal);
        foreach (var item in (text ?? "").Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            var equals = item.IndexOf('=');
            var seconds = 0.0;
            if (equals >= 0 && !double.TryParse(item[(equals + 1)..], NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out seconds))
            {
                continue;
            }
            faults[equals < 0 ? item : item[..equals]] = TimeSpan.FromSeconds(seconds);
        }
        return faults;
    }
}

/// <summary>The failure <see cref="FaultInjection"/> provokes.</summary>
public sealed class InjectedFaultException(string service) : Exception($"fault injected by {FaultInjection.EnvironmentVariable} into {service}");
