namespace Lkrun.Engines.Vz.Machine;

/// <summary>The framework's errors that deserve a line of their own.</summary>
public static class VzErrors
{
    /// <summary>The entitlement without which no configuration validates (VZVirtualMachineConfiguration.h).</summary>
    public const string Entitlement = "com.apple.security.virtualization";

    /// <summary>The entitlements file <c>./lkrun</c> signs its builds with on macOS.</summary>
    public const string EntitlementsFile = "scripts/lkrun.entitlements";

    /// <summary>
    /// The framework's refusal for an unsigned binary names the entitlement (VZErrorDomain Code=2, as reported in
    /// containers/podman PR #21843).
    /// </summary>
    public static bool IsMissingEntitlement(string description) => description.Contains(Entitlement, StringComparison.Ordinal);

    public static string MissingEntitlement(string? binary) =>
        $"{binary ?? "lkrun"} is not signed with the {Entitlement} entitlement that Virtualization.framework requires; " +
        $"sign it: codesign --force --sign - --entitlements {EntitlementsFile} {binary ?? "out/cli/lkrun"} (./lkrun does this after each build on macOS)";
}
