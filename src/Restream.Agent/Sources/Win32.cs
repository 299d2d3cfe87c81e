using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Versioning;

namespace Restream.Agent.Sources;

/// <summary>
/// Monitors and top-level windows on Windows through user32 (EnumDisplayMonitors, EnumWindows).
/// Compiled everywhere, run only on Windows; CI checks it by publishing for win-x64.
/// </summary>
[SupportedOSPlatform("windows")]
internal static unsafe partial class Win32
{
    private const uint MonitorInfoPrimary = 1;
    private const int GwlExStyle = -20;
    private const long WsExToolWindow = 0x00000080;

    public static IReadOnlyList<DisplayInfo> Monitors()
    {
        var found = new List<DisplayInfo>();
        var handle = GCHandle.Alloc(found);
        try
        {
            EnumDisplayMonitors(IntPtr.Zero, IntPtr.Zero, &OnMonitor, GCHandle.ToIntPtr(handle));
        }
        finally
        {
            handle.Free();
        }

        return found;
    }

    public static IReadOnlyList<WindowInfo> Windows()
    {
        var found = new List<WindowInfo>();
        var handle = GCHandle.Alloc(found);
        try
        {
            EnumWindows(&OnWindow, GCHandle.ToIntPtr(handle));
        }
        finally
        {
            handle.Free();
        }

        return found;
    }

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvStdcall)])]
    private static int OnMonitor(IntPtr monitor, IntPtr dc, Rect* bounds, IntPtr state)
    {
        var list = (List<DisplayInfo>)GCHandle.FromIntPtr(state).Target!;
        var info = new MonitorInfoEx { Size = (uint)sizeof(MonitorInfoEx) };
        var name = $"display {list.Count}";
        var primary = false;
        if (GetMonitorInfoW(monitor, &info) != 0)
        {
            name = new string(info.Device, 0, 32).TrimEnd('\0');
            primary = (info.Flags & MonitorInfoPrimary) != 0;
        }

        list.Add(new DisplayInfo(list.Count, name, bounds->Left, bounds->Top, bounds->Right - bounds->Left, bounds->Bottom - bounds->Top, primary));
        return 1;
    }

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvStdcall)])]
    private static int OnWindow(IntPtr window, IntPtr state)
    {
        // Only what a streamer would pick: visible, titled, not a tool window.
        if (IsWindowVisible(window) == 0 || (GetWindowLongPtrW(window, GwlExStyle) & WsExToolWindow) != 0)
        {
            return 1;
        }

        var length = GetWindowTextLengthW(window);
        if (length == 0)
        {
            return 1;
        }

        var buffer = stackalloc char[length + 1];
        var copied = GetWindowTextW(window, buffer, length + 1);
        var title = new string(buffer, 0, copied);
        GetWindowRect(window, out var rect);
        GetWindowThreadProcessId(window, out var pid);
        string? process = null;
        try
        {
            using var p = Process.GetProcessById((int)pid);
            process = p.ProcessName;
        }
        catch (ArgumentException)
        {
            // the process is gone already
        }

        var list = (List<WindowInfo>)GCHandle.FromIntPtr(state).Target!;
        list.Add(new WindowInfo((ulong)window, title, process, rect.Left, rect.Top, rect.Right - rect.Left, rect.Bottom - rect.Top));
        return 1;
    }

    [StructLayout(LayoutKind.Sequential)]
    private struct Rect
    {
        public int Left, Top, Right, Bottom;
    }

    [StructLayout(LayoutKind.Sequential)]
    private struct MonitorInfoEx
    {
        public uint Size;
        public Rect Monitor;
        public Rect Work;
        public uint Flags;
        public fixed char Device[32];
    }

    [LibraryImport("user32.dll")]
    private static partial int EnumDisplayMonitors(IntPtr dc, IntPtr clip, delegate* unmanaged[Stdcall]<IntPtr, IntPtr, Rect*, IntPtr, int> callback, IntPtr state);

    [LibraryImport("user32.dll")]
    private static partial int GetMonitorInfoW(IntPtr monitor, MonitorInfoEx* info);

    [LibraryImport("user32.dll")]
    private static partial int EnumWindows(delegate* unmanaged[Stdcall]<IntPtr, IntPtr, int> callback, IntPtr state);

    [LibraryImport("user32.dll")]
    private static partial int IsWindowVisible(IntPtr window);

    [LibraryImport("user32.dll")]
    private static partial int GetWindowTextLengthW(IntPtr window);

    [LibraryImport("user32.dll")]
    private static partial int GetWindowTextW(IntPtr window, char* text, int max);

    [LibraryImport("user32.dll")]
    private static partial long GetWindowLongPtrW(IntPtr window, int index);

    [LibraryImport("user32.dll")]
    private static partial int GetWindowRect(IntPtr window, out Rect rect);

    [LibraryImport("user32.dll")]
    private static partial uint GetWindowThreadProcessId(IntPtr window, out uint processId);
}
