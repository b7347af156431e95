namespace Lkrun.Spec;

public enum SpecErrorKind
{
    /// <summary>A flag or value the user typed is wrong (exit code 2, like a usage error).</summary>
    Usage,

    /// <summary>A file the VM needs is missing or unreadable (exit code 1).</summary>
    MissingFile,
}

/// <summary>An error meant for the user: its message is one line, and it says which exit code lkrun ends with.</summary>
public interface IUserError
{
    int ExitCode { get; }
}

/// <summary>The VM cannot be described as asked. The message is one line naming the flag or file.</summary>
public sealed class SpecException(SpecErrorKind kind, string message) : Exception(message), IUserError
{
    public SpecErrorKind Kind { get; } = kind;

    public int ExitCode => Kind == SpecErrorKind.Usage ? 2 : 1;

    public static SpecException Usage(string message) => new(SpecErrorKind.Usage, message);

    public static SpecException MissingFile(string message) => new(SpecErrorKind.MissingFile, message);
}
