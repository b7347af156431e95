using System.Runtime.InteropServices;

namespace Lkrun.Services.Interop;

/// <summary>A libc call failed; <see cref="Errno"/> says why and the message is one line naming the operation.</summary>
public sealed class SystemCallException(string operation, int errno)
    : IOException($"{operation}: {Marshal.GetPInvokeErrorMessage(errno)}")
{
    public int Errno { get; } = errno;
}
