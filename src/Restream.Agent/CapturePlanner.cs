using Restream.Agent.Sources;
using Restream.Transcode;

namespace Restream.Agent;

/// <summary>Turns a profile into a capture plan on this machine: finds the window, the monitor, the sound devices and the encoder.</summary>
public static class CapturePlanner
{
    public static async Task<CapturePlan> PlanAsync(AgentProfile profile, CancellationToken cancellationToken)
    {
        var video = await ResolveVideoAsync(profile.Video, cancellationToken).ConfigureAwait(false);
        var (system, microphone) = await ResolveAudioAsync(profile.Audio, cancellationToken).ConfigureAwait(false);
        var encoder = profile.Encoder.Name;
        if (encoder == "auto")
        {
            var report = await EncoderProbe.ProbeAsync(cancellationToken).ConfigureAwait(false);
            encoder = Encoders.Choose("auto", report.Encoders);
        }

        (int, int)? size = Geometry.TryParseSize(profile.Video.Size, out var w, out var h) ? (w, h) : null;
        return new CapturePlan(video, system, microphone, profile.Audio.MicrophoneVolume, encoder, profile.Encoder, size,
            profile.Video.Fps, profile.Video.Cursor, profile.Overlays, DefaultFont());
    }

    public static string DefaultFont()
    {
        string[] candidates = OperatingSystem.IsWindows()
            ? [@"C:\Windows\Fonts\segoeui.ttf", @"C:\Windows\Fonts\arial.ttf"]
            : ["/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", "/usr/share/fonts/TTF/DejaVuSans.ttf", "/usr/share/fonts/dejavu/DejaVuSans.ttf"];
        // A family name lets fontconfig pick when none of the usual files exist.
        return candidates.FirstOrDefault(File.Exists) ?? "Sans";
    }

    private static async Task<VideoInput> ResolveVideoAsync(VideoSettings video, CancellationToken cancellationToken)
    {
        if (video.Source == "test")
        {
            return Geometry.TryParseSize(video.Size, out var tw, out var th) ? new TestPattern(tw, th) : new TestPattern(1280, 720);
        }

        Geometry.TryParseRegion(video.Region, out var region);
        if (OperatingSystem.IsWindows())
        {
            switch (video.Source)
            {
                case "window":
                    var window = SourceCatalog.FindWindow(Win32.Windows(), video.Window!);
                    // Windows Graphics Capture sees windows that GDI cannot (games, hardware-accelerated apps): ffmpeg 8 or newer.
                    return await FfmpegMajorVersionAsync(cancellationToken).ConfigureAwait(false) >= 8
                        ? new GfxWindow(window.Id)
                        : new GdiCapture(window.Title);
                case "region":
                    return new DdaDisplay(0, region);
                default:
                    var monitors = Win32.Monitors();
                    if (video.Monitor < 0 || video.Monitor >= Math.Max(1, monitors.Count))
                    {
                        throw new SourceException($"video.monitor: there is no monitor {video.Monitor} (this PC has {monitors.Count})");
                    }

                    return new DdaDisplay(video.Monitor);
            }
        }

        if (SourceCatalog.WaylandNote() is { } note && Environment.GetEnvironmentVariable("DISPLAY") is not { Length: > 0 })
        {
            throw new SourceException(note);
        }

        var display = SourceCatalog.Display;
        switch (video.Source)
        {
            case "window":
                var window = SourceCatalog.FindWindow(X11.Windows(display), video.Window!);
                return new X11Window(display, window.Id, window.Width, window.Height);
            case "region":
                return new X11Area(display, region.X, region.Y, region.Width, region.Height);
            default:
                var monitors = X11.Monitors(display);
                if (video.Monitor < 0 || video.Monitor >= monitors.Count)
                {
                    throw new SourceException($"video.monitor: there is no monitor {video.Monitor} (display {display} has {monitors.Count})");
                }

                var m = monitors[video.Monitor];
                return new X11Area(display, m.X, m.Y, m.Width & ~1, m.Height & ~1);
        }
    }

    private static async Task<(AudioInput? System, AudioInput? Microphone)> ResolveAudioAsync(AudioSettings audio, CancellationToken cancellationToken)
    {
        AudioInput? system = null;
        AudioInput? microphone = null;
        if (audio.System.StartsWith("tone", StringComparison.Ordinal))
        {
            system = new ToneSource(440);
        }
        else if (OperatingSystem.IsWindows())
        {
            if (audio.System != "none")
            {
                var name = audio.System;
                if (name == "default")
                {
                    var devices = await SourceCatalog.DshowAudioDevicesAsync(cancellationToken).ConfigureAwait(false);
                    name = devices.FirstOrDefault(d => d.SystemOutput)?.Name
                        ?? throw new SourceException("audio.system: no loopback device (enable \"Stereo Mix\" or name a device from: restream-agent sources)");
                }

                system = new DshowAudio(name);
            }

            microphone = audio.Microphone is { Length: > 0 } mic ? new DshowAudio(mic) : null;
            return (system, microphone);
        }
        else if (audio.System != "none")
        {
            var name = audio.System;
            if (name == "default")
            {
                name = SourceCatalog.DefaultSystemSource(await SourceCatalog.PulseSourcesAsync(cancellationToken).ConfigureAwait(false));
            }

            system = new PulseSource(name);
        }

        microphone = audio.Microphone is { Length: > 0 } m ? new PulseSource(m) : null;
        return (system, microphone);
    }

    public static async Task<int> FfmpegMajorVersionAsync(CancellationToken cancellationToken)
    {
        var (code, output) = await SourceCatalog.RunAsync("ffmpeg", ["-hide_banner", "-version"], cancellationToken).ConfigureAwait(false);
        return code == 0 ? ParseFfmpegMajor(output) : 0;
    }

    /// <summary>"ffmpeg version 5.1.6-0+deb12u1 …", "ffmpeg version n8.0 …", "ffmpeg version 2025-01-02-git-… " (a git build: new).</summary>
    public static int ParseFfmpegMajor(string versionOutput)
    {
        var first = versionOutput.Split('\n')[0];
        const string prefix = "ffmpeg version ";
        var at = first.IndexOf(prefix, StringComparison.Ordinal);
        if (at < 0)
        {
            return 0;
        }

        var version = first[(at + prefix.Length)..].TrimStart('n', 'N');
        var digits = new string([.. version.TakeWhile(char.IsAsciiDigit)]);
        if (!int.TryParse(digits, out var major))
        {
            return 0;
        }

        // Git snapshots are named by date: they are newer than any release.
        return major > 1000 ? 99 : major;
    }
}
