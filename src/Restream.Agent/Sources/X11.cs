using System.Runtime.InteropServices;
using System.Text;

namespace Restream.Agent.Sources;

/// <summary>
/// Screens, monitors and top-level windows of an X11 display through libX11 (and libXrandr for
/// monitors). Windows come from the window manager's <c>_NET_CLIENT_LIST</c>; with no window
/// manager (a bare Xvfb, a kiosk) from the root window's mapped children.
/// </summary>
internal static partial class X11
{
    private const string LibX11 = "libX11.so.6";
    private const string LibXrandr = "libXrandr.so.2";
    private const int IsViewable = 2;
    private const ulong AnyPropertyType = 0;

    public static IReadOnlyList<DisplayInfo> Monitors(string display)
    {
        var handle = Open(display);
        try
        {
            var screen = XDefaultScreen(handle);
            var width = XDisplayWidth(handle, screen);
            var height = XDisplayHeight(handle, screen);
            var monitors = new List<DisplayInfo>();
            try
            {
                var list = XRRGetMonitors(handle, XDefaultRootWindow(handle), true, out var count);
                if (list != IntPtr.Zero)
                {
                    var size = Marshal.SizeOf<XRRMonitorInfo>();
                    for (var i = 0; i < count; i++)
                    {
                        var info = Marshal.PtrToStructure<XRRMonitorInfo>(list + i * size);
                        var name = AtomName(handle, info.Name) ?? $"monitor {i}";
                        monitors.Add(new DisplayInfo(i, name, info.X, info.Y, info.Width, info.Height, info.Primary != 0));
                    }

                    XRRFreeMonitors(list);
                }
            }
            catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
            {
                // No XRandR: the whole screen is the one monitor.
            }

            if (monitors.Count == 0)
            {
                monitors.Add(new DisplayInfo(0, $"screen {screen}", 0, 0, width, height, true));
            }

            return monitors;
        }
        finally
        {
            XCloseDisplay(handle);
        }
    }

    public static IReadOnlyList<WindowInfo> Windows(string display)
    {
        var handle = Open(display);
        try
        {
            var root = XDefaultRootWindow(handle);
            var ids = ClientList(handle, root);
            if (ids.Count == 0)
            {
                ids = MappedChildren(handle, root);
            }

            var windows = new List<WindowInfo>();
            foreach (var id in ids)
            {
                if (XGetWindowAttributes(handle, id, out var attributes) == 0 || attributes.MapState != IsViewable)
                {
                    continue;
                }

                var title = Title(handle, id);
                if (string.IsNullOrWhiteSpace(title))
                {
                    continue;
                }

                XTranslateCoordinates(handle, id, root, 0, 0, out var x, out var y, out _);
                var pid = Cardinal(handle, id, "_NET_WM_PID");
                windows.Add(new WindowInfo(id, title, ProcessName(pid), x, y, attributes.Width, attributes.Height));
            }

            return windows;
        }
        finally
        {
            XCloseDisplay(handle);
        }
    }

    private static IntPtr Open(string display)
    {
        var handle = XOpenDisplay(display);
        return handle != IntPtr.Zero
            ? handle
            : throw new SourceException($"cannot open X display '{display}': is DISPLAY right, and may this user use it (xhost/xauth)?");
    }

    private static List<ulong> ClientList(IntPtr display, ulong root)
    {
        var atom = XInternAtom(display, "_NET_CLIENT_LIST", true);
        var result = new List<ulong>();
        if (atom == 0 || XGetWindowProperty(display, root, atom, 0, 4096, false, AnyPropertyType, out _, out var format,
                out var count, out _, out var data) != 0 || data == IntPtr.Zero)
        {
            return result;
        }

        if (format == 32)
        {
            for (var i = 0; i < (long)count; i++)
            {
                // Format 32 properties are C longs in memory: 8 bytes on 64-bit Linux.
                result.Add((ulong)Marshal.ReadInt64(data, i * 8));
            }
        }

        XFree(data);
        return result;
    }

    private static List<ulong> MappedChildren(IntPtr display, ulong root)
    {
        var result = new List<ulong>();
        if (XQueryTree(display, root, out _, out _, out var children, out var count) == 0 || children == IntPtr.Zero)
        {
            return result;
        }

        for (var i = 0; i < count; i++)
        {
            result.Add((ulong)Marshal.ReadInt64(children, i * 8));
        }

        XFree(children);
        return result;
    }

    private static string? Title(IntPtr display, ulong window)
    {
        var utf8 = XInternAtom(display, "UTF8_STRING", true);
        var netName = XInternAtom(display, "_NET_WM_NAME", true);
        if (netName != 0 && utf8 != 0 && XGetWindowProperty(display, window, netName, 0, 1024, false, utf8, out _, out _,
                out var count, out _, out var data) == 0 && data != IntPtr.Zero)
        {
            var text = Marshal.PtrToStringUTF8(data, (int)count);
            XFree(data);
            if (!string.IsNullOrEmpty(text))
            {
                return text;
            }
        }

        if (XFetchName(display, window, out var name) != 0 && name != IntPtr.Zero)
        {
            var text = Marshal.PtrToStringUTF8(name);
            XFree(name);
            return text;
        }

        return null;
    }

    private static long Cardinal(IntPtr display, ulong window, string property)
    {
        var atom = XInternAtom(display, property, true);
        if (atom == 0 || XGetWindowProperty(display, window, atom, 0, 1, false, AnyPropertyType, out _, out var format,
                out var count, out _, out var data) != 0 || data == IntPtr.Zero)
        {
            return 0;
        }

        var value = format == 32 && count > 0 ? Marshal.ReadInt64(data) : 0;
        XFree(data);
        return value;
    }

    private static string? ProcessName(long pid)
    {
        try
        {
            return pid > 0 ? File.ReadAllText($"/proc/{pid}/comm").Trim() : null;
        }
        catch (IOException)
        {
            return null;
        }
    }

    private static string? AtomName(IntPtr display, ulong atom)
    {
        var name = XGetAtomName(display, atom);
        if (name == IntPtr.Zero)
        {
            return null;
        }

        var text = Marshal.PtrToStringUTF8(name);
        XFree(name);
        return text;
    }

    [StructLayout(LayoutKind.Sequential)]
    private struct XWindowAttributes
    {
        public int X, Y, Width, Height, BorderWidth, Depth;
        public IntPtr Visual;
        public ulong Root;
        public int Class, BitGravity, WinGravity, BackingStore;
        public ulong BackingPlanes, BackingPixel;
        public int SaveUnder;
        public ulong Colormap;
        public int MapInstalled, MapState;
        public long AllEventMasks, YourEventMask, DoNotPropagateMask;
        public int OverrideRedirect;
        public IntPtr Screen;
    }

    [StructLayout(LayoutKind.Sequential)]
    private struct XRRMonitorInfo
    {
        public ulong Name;
        public int Primary, Automatic, NOutput, X, Y, Width, Height, MWidth, MHeight;
        public IntPtr Outputs;
    }

    [LibraryImport(LibX11, StringMarshalling = StringMarshalling.Utf8)]
    private static partial IntPtr XOpenDisplay(string? name);

    [LibraryImport(LibX11)]
    private static partial int XCloseDisplay(IntPtr display);

    [LibraryImport(LibX11)]
    private static partial int XDefaultScreen(IntPtr display);

    [LibraryImport(LibX11)]
    private static partial ulong XDefaultRootWindow(IntPtr display);

    [LibraryImport(LibX11)]
    private static partial int XDisplayWidth(IntPtr display, int screen);

    [LibraryImport(LibX11)]
    private static partial int XDisplayHeight(IntPtr display, int screen);

    [LibraryImport(LibX11, StringMarshalling = StringMarshalling.Utf8)]
    private static partial ulong XInternAtom(IntPtr display, string name, [MarshalAs(UnmanagedType.Bool)] bool onlyIfExists);

    [LibraryImport(LibX11)]
    private static partial IntPtr XGetAtomName(IntPtr display, ulong atom);

    [LibraryImport(LibX11)]
    private static partial int XGetWindowProperty(IntPtr display, ulong window, ulong property, long offset, long length,
        [MarshalAs(UnmanagedType.Bool)] bool delete, ulong type, out ulong actualType, out int actualFormat, out ulong items,
        out ulong bytesAfter, out IntPtr data);

    [LibraryImport(LibX11)]
    private static partial int XQueryTree(IntPtr display, ulong window, out ulong root, out ulong parent, out IntPtr children, out uint count);

    [LibraryImport(LibX11)]
    private static partial int XFetchName(IntPtr display, ulong window, out IntPtr name);

    [LibraryImport(LibX11)]
    private static partial int XGetWindowAttributes(IntPtr display, ulong window, out XWindowAttributes attributes);

    [LibraryImport(LibX11)]
    [return: MarshalAs(UnmanagedType.Bool)]
    private static partial bool XTranslateCoordinates(IntPtr display, ulong source, ulong destination, int x, int y, out int destX, out int destY, out ulong child);

    [LibraryImport(LibX11)]
    private static partial int XFree(IntPtr data);

    [LibraryImport(LibXrandr)]
    private static partial IntPtr XRRGetMonitors(IntPtr display, ulong window, [MarshalAs(UnmanagedType.Bool)] bool active, out int count);

    [LibraryImport(LibXrandr)]
    private static partial void XRRFreeMonitors(IntPtr monitors);
}
