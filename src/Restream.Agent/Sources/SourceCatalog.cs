using System.Globalization;
using System.Text.RegularExpressions;

namespace Restream.Agent.Sources;

/// <summary>A screen or monitor that can be captured.</summary>
public sealed record DisplayInfo(int Index, string Name, int X, int Y, int Width, int Height, bool Primary);

/// <summary>A top-level window that can be captured.</summary>
public sealed record WindowInfo(ulong Id, string Title, string? Process, int X, int Y, int Width, int Height);

/// <summary>An audio device: <c>SystemOutput</c> is "what you hear" (a monitor/loopback), else a microphone or line in.</summary>
public sealed record AudioDevice(string Name, string Description, bool SystemOutput, bool Default);

/// <summary>What can be captured here, and what cannot with the reason.</summary>
public sealed record SourceReport(
    string Platform, IReadOnlyList<DisplayInfo> Displays, IReadOnlyList<WindowInfo> Windows, IReadOnlyList<AudioDevice> Audio,
    IReadOnlyList<string> Notes);

/// <summary>A source that cannot be used, with what to do about it.</summary>
public sealed class SourceException(string message) : Exception(message);

/// <summary>Finds screens, windows and audio devices on Linux (X11, PulseAudio/PipeWire) and Windows (Win32, DirectShow).</summary>
public static partial class SourceCatalog
{
    public static string Display => Environment.GetEnvironmentVariable("DISPLAY") is { Length: > 0 } d ? d : ":0";

    /// <summary>Wayland sessions hide other clients' windows from X11; say so instead of failing obscurely.</summary>
    public static string? WaylandNote()
    {
        var wayland = Environment.GetEnvironmentVariable("WAYLAND_DISPLAY") is { Length: > 0 }
            || string.Equals(Environment.GetEnvironmentVariable("XDG_SESSION_TYPE"), "wayland", StringComparison.OrdinalIgnoreCase);
        return wayland
            ? "Wayland session: only XWayland windows (most games run there) can be listed and captured through X11; " +
              "whole-screen capture of native Wayland windows needs the PipeWire screencast portal, which the agent does not use yet. " +
              "Log in to an X11 session (\"Ubuntu on Xorg\") to capture everything."
            : null;
    }

    public static async Task<SourceReport> DiscoverAsync(CancellationToken cancellationToken)
    {
        var notes = new List<string>();
        IReadOnlyList<DisplayInfo> displays = [];
        IReadOnlyList<WindowInfo> windows = [];
        IReadOnlyList<AudioDevice> audio = [];
        if (OperatingSystem.IsWindows())
        {
            displays = Win32.Monitors();
            windows = Win32.Windows();
            try
            {
                audio = await DshowAudioDevicesAsync(cancellationToken).ConfigureAwait(false);
            }
            catch (SourceException e)
            {
                notes.Add(e.Message);
            }

            if (!audio.Any(a => a.SystemOutput))
            {
                notes.Add("No loopback audio device found: enable \"Stereo Mix\" in Sound settings, or install a virtual " +
                          "audio capturer, to stream what you hear.");
            }

            return new SourceReport("windows", displays, windows, audio, notes);
        }

        if (WaylandNote() is { } wayland)
        {
            notes.Add(wayland);
        }

        try
        {
            displays = X11.Monitors(Display);
            windows = X11.Windows(Display);
        }
        catch (Exception e) when (e is SourceException or DllNotFoundException)
        {
            notes.Add(e is DllNotFoundException ? "libX11 is not installed (apt install libx11-6)" : e.Message);
        }

        try
        {
            audio = await PulseSourcesAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (SourceException e)
        {
            notes.Add(e.Message);
        }

        return new SourceReport("linux", displays, windows, audio, notes);
    }

    /// <summary>Finds the one window a streamer meant: an id, an exact title, or a unique part of a title.</summary>
    public static WindowInfo FindWindow(IReadOnlyList<WindowInfo> windows, string wanted)
    {
        if (wanted.StartsWith("0x", StringComparison.OrdinalIgnoreCase)
            && ulong.TryParse(wanted.AsSpan(2), NumberStyles.HexNumber, CultureInfo.InvariantCulture, out var id))
        {
            return windows.FirstOrDefault(w => w.Id == id) ?? throw new SourceException($"no window with id {wanted} (see: restream-agent sources)");
        }

        var exact = windows.Where(w => string.Equals(w.Title, wanted, StringComparison.OrdinalIgnoreCase)).ToList();
        if (exact.Count == 1)
        {
            return exact[0];
        }

        var partial = windows.Where(w => w.Title.Contains(wanted, StringComparison.OrdinalIgnoreCase)
            || (w.Process?.Equals(wanted, StringComparison.OrdinalIgnoreCase) ?? false)).ToList();
        return partial.Count switch
        {
            1 => partial[0],
            0 => throw new SourceException($"no window titled like '{wanted}' is open (see: restream-agent sources)"),
            _ => throw new SourceException($"'{wanted}' matches {partial.Count} windows: " +
                string.Join(", ", partial.Take(5).Select(w => $"\"{w.Title}\" (0x{w.Id:x})")) + "; give more of the title or the id"),
        };
    }

    /// <summary>PulseAudio and PipeWire (through pipewire-pulse) sources, with the default sink's monitor marked as system sound.</summary>
    public static async Task<IReadOnlyList<AudioDevice>> PulseSourcesAsync(CancellationToken cancellationToken)
    {
        var (code, listing) = await RunAsync("pactl", ["list", "short", "sources"], cancellationToken).ConfigureAwait(false);
        if (code != 0)
        {
            throw new SourceException("cannot reach PulseAudio/PipeWire (pactl failed): is the sound server running for this user? " +
                                      "(apt install pulseaudio-utils; systemctl --user start pipewire-pulse)");
        }

        var (_, defaultSink) = await RunAsync("pactl", ["get-default-sink"], cancellationToken).ConfigureAwait(false);
        var (_, defaultSource) = await RunAsync("pactl", ["get-default-source"], cancellationToken).ConfigureAwait(false);
        return ParsePulseSources(listing, defaultSink.Trim(), defaultSource.Trim());
    }

    /// <summary>Parses <c>pactl list short sources</c>: index, name, driver, format, state, tab-separated.</summary>
    public static IReadOnlyList<AudioDevice> ParsePulseSources(string listing, string defaultSink, string defaultSource)
    {
        var devices = new List<AudioDevice>();
        foreach (var line in listing.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            var fields = line.Split('\t');
            if (fields.Length < 2)
            {
                continue;
            }

            var name = fields[1];
            var monitor = name.EndsWith(".monitor", StringComparison.Ordinal);
            var isDefault = monitor ? name == defaultSink + ".monitor" : name == defaultSource;
            var description = monitor ? $"what you hear on {name[..^".monitor".Length]}" : "microphone / input";
            devices.Add(new AudioDevice(name, description, monitor, isDefault));
        }

        return devices;
    }

    /// <summary>The system sound source: the default sink's monitor, or the only monitor there is.</summary>
    public static string DefaultSystemSource(IReadOnlyList<AudioDevice> devices) =>
        (devices.FirstOrDefault(d => d.SystemOutput && d.Default) ?? devices.FirstOrDefault(d => d.SystemOutput))?.Name
        ?? throw new SourceException("no system sound source (sink monitor) found: is PulseAudio/PipeWire running with an output device?");

    public static async Task<IReadOnlyList<AudioDevice>> DshowAudioDevicesAsync(CancellationToken cancellationToken)
    {
        // ffmpeg lists DirectShow devices on stderr and then "fails" to open the dummy input.
        var (_, output) = await RunAsync("ffmpeg", ["-hide_banner", "-list_devices", "true", "-f", "dshow", "-i", "dummy"], cancellationToken)
            .ConfigureAwait(false);
        return ParseDshowAudio(output);
    }

    /// <summary>
    /// Parses ffmpeg's DirectShow listing, in both the old layout (a "DirectShow audio devices"
    /// header, then names) and the newer one (each name followed by "(audio)").
    /// </summary>
    public static IReadOnlyList<AudioDevice> ParseDshowAudio(string output)
    {
        var devices = new List<AudioDevice>();
        var inAudioSection = false;
        foreach (var raw in output.Split('\n'))
        {
            var line = raw.Trim();
            if (line.Contains("DirectShow audio devices", StringComparison.Ordinal))
            {
                inAudioSection = true;
                continue;
            }

            if (line.Contains("DirectShow video devices", StringComparison.Ordinal))
            {
                inAudioSection = false;
                continue;
            }

            if (line.Contains("Alternative name", StringComparison.Ordinal))
            {
                continue;
            }

            var match = QuotedName().Match(line);
            if (!match.Success)
            {
                continue;
            }

            var isAudio = line.EndsWith("(audio)", StringComparison.Ordinal) || (inAudioSection && !line.EndsWith("(video)", StringComparison.Ordinal));
            if (!isAudio)
            {
                continue;
            }

            var name = match.Groups[1].Value;
            var loopback = name.Contains("Stereo Mix", StringComparison.OrdinalIgnoreCase)
                || name.Contains("virtual-audio-capturer", StringComparison.OrdinalIgnoreCase)
                || name.Contains("Loopback", StringComparison.OrdinalIgnoreCase)
                || name.Contains("What U Hear", StringComparison.OrdinalIgnoreCase);
            devices.Add(new AudioDevice(name, loopback ? "what you hear (loopback)" : "microphone / input", loopback, false));
        }

        return devices;
    }

    [GeneratedRegex("\"([^\"]+)\"")]
    private static partial Regex QuotedName();

    internal static Task<(int Code, string Output)> RunAsync(string program, IReadOnlyList<string> arguments, CancellationToken cancellationToken) =>
        Transcode.OneShotProcess.RunAsync(program, arguments, cancellationToken);
}
