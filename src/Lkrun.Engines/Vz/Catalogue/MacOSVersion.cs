namespace Lkrun.Engines.Vz.Catalogue;

/// <summary>A macOS release, as Apple's <c>API_AVAILABLE(macos(N))</c> annotations name them.</summary>
public readonly record struct MacOSVersion(int Major, int Minor = 0) : IComparable<MacOSVersion>
{
    public static readonly MacOSVersion Foundation = new(10, 0);
    public static readonly MacOSVersion BigSur = new(11);
    public static readonly MacOSVersion Monterey = new(12);
    public static readonly MacOSVersion Ventura = new(13);

    public static MacOSVersion Of(Version version) => new(version.Major, Math.Max(version.Minor, 0));

    public static MacOSVersion Max(MacOSVersion a, MacOSVersion b) => a >= b ? a : b;

    public int CompareTo(MacOSVersion other) => Major != other.Major ? Major.CompareTo(other.Major) : Minor.CompareTo(other.Minor);

    public static bool operator <(MacOSVersion a, MacOSVersion b) => a.CompareTo(b) < 0;

    public static bool operator >(MacOSVersion a, MacOSVersion b) => a.CompareTo(b) > 0;

    public static bool operator <=(MacOSVersion a, MacOSVersion b) => a.CompareTo(b) <= 0;

    public static bool operator >=(MacOSVersion a, MacOSVersion b) => a.CompareTo(b) >= 0;

    public override string ToString() => Minor == 0 ? $"{Major}" : $"{Major}.{Minor}";
}
