using System.Globalization;
using System.Text;

namespace Restream.Agent;

/// <summary>Where the picture comes from, resolved to something ffmpeg can open.</summary>
public abstract record VideoInput;

/// <summary>Linux/X11: a rectangle of the desktop (a whole screen, a monitor, a region).</summary>
public sealed record X11Area(string Display, int X, int Y, int Width, int Height) : VideoInput;

/// <summary>Linux/X11: one window, followed when it moves.</summary>
public sealed record X11Window(string Display, ulong WindowId, int Width, int Height) : VideoInput;

/// <summary>Windows: a display through Desktop Duplication (ddagrab), optionally a region of it.</summary>
public sealed record DdaDisplay(int OutputIndex, (int X, int Y, int Width, int Height)? Region = null) : VideoInput;

/// <summary>Windows 10+: one window through Windows Graphics Capture (ffmpeg 8's gfxcapture).</summary>
public sealed record GfxWindow(ulong Handle) : VideoInput;

/// <summary>Windows, older ffmpeg: one window by title, or the desktop, through GDI (gdigrab).</summary>
public sealed record GdiCapture(string? WindowTitle, (int X, int Y, int Width, int Height)? Region = null) : VideoInput;

/// <summary>A moving test pattern with a clock: tries the whole chain without capturing anything.</summary>
public sealed record TestPattern(int Width, int Height) : VideoInput;

/// <summary>Where a sound comes from.</summary>
public abstract record AudioInput;

/// <summary>A PulseAudio / PipeWire-pulse source (a sink's <c>.monitor</c> is "what you hear").</summary>
public sealed record PulseSource(string Name) : AudioInput;

/// <summary>A DirectShow audio device on Windows ("Stereo Mix", a microphone, a virtual loopback device).</summary>
public sealed record DshowAudio(string Name) : AudioInput;

/// <summary>A test tone, for trying things out.</summary>
public sealed record ToneSource(int Frequency) : AudioInput;

/// <summary>Everything decided: inputs, encoder, size, overlays. Turned into ffmpeg arguments by <see cref="CaptureCommand"/>.</summary>
public sealed record CapturePlan(
    VideoInput Video,
    AudioInput? SystemAudio,
    AudioInput? Microphone,
    double MicrophoneVolume,
    string Encoder,
    EncoderSettings Settings,
    (int Width, int Height)? OutputSize,
    int Fps,
    bool Cursor,
    IReadOnlyList<OverlaySettings> Overlays,
    string DefaultFont)
{
    /// <summary>
    /// Wall-clock seconds (Unix time) the capture inputs are measured from. x11grab and PulseAudio
    /// stamp what they capture with the wall clock; keeping those stamps (less this base) lines
    /// picture and sound up by when they really happened. Without it ffmpeg starts each input at
    /// zero, and the time PulseAudio takes to open (most of a second) becomes a lag that holds every
    /// video frame back until its sound arrives (measured in bench/: 0.8 s screen-to-ingest).
    /// </summary>
    public double? WallclockBase { get; init; }

    internal bool AlignsByWallclock => WallclockBase is not null && Video is X11Area or X11Window
        && SystemAudio is null or PulseSource && Microphone is null or PulseSource;
}

/// <summary>
/// Builds the ffmpeg argument list for a capture plan: inputs, one filter graph (capture → scale →
/// fps → overlays; audio sources mixed), CBR encode with a keyframe every N seconds, and FLV on
/// standard output, which the agent reads and pushes with its own RTMP/SRT client. Argument lists
/// only: ffmpeg is never started through a shell.
/// </summary>
public static class CaptureCommand
{
    public static IReadOnlyList<string> Build(CapturePlan plan)
    {
        var args = new List<string>
        {
            "-hide_banner", "-nostdin", "-loglevel", "warning",
            // Live figures on stderr as key=value blocks, once a second.
            "-stats_period", "1", "-progress", "pipe:2", "-nostats",
        };
        if (plan.Encoder.EndsWith("_vaapi", StringComparison.Ordinal))
        {
            args.AddRange(["-vaapi_device", "/dev/dri/renderD128"]);
        }

        if (plan.AlignsByWallclock)
        {
            args.Add("-copyts");
        }

        var inputs = 0;
        AddVideoInput(args, plan);
        inputs++;

        var audioInputs = new List<int>();
        foreach (var audio in new[] { plan.SystemAudio, plan.Microphone })
        {
            if (audio is not null)
            {
                AddAudioInput(args, audio, plan);
                audioInputs.Add(inputs++);
            }
        }

        if (audioInputs.Count == 0)
        {
            // Platforms expect an audio track; silence keeps players and transcoders happy.
            args.AddRange(["-f", "lavfi", "-i", "anullsrc=channel_layout=stereo:sample_rate=48000"]);
            audioInputs.Add(inputs++);
        }

        var imageInputs = new Dictionary<OverlaySettings, int>();
        foreach (var overlay in plan.Overlays.Where(o => o.Type == "image"))
        {
            args.AddRange(["-loop", "1", "-framerate", Num(plan.Fps), "-i", overlay.Image!]);
            imageInputs[overlay] = inputs++;
        }

        var graph = new StringBuilder();
        BuildVideoGraph(graph, plan, imageInputs);
        BuildAudioGraph(graph, plan, audioInputs);
        args.AddRange(["-filter_complex", graph.ToString(), "-map", "[vout]", "-map", "[aout]"]);

        args.AddRange(Encoders.VideoArguments(plan.Encoder, plan.Settings, plan.Fps));
        args.AddRange(["-c:a", "aac", "-b:a", $"{plan.Settings.AudioKbps}k", "-ar", "48000", "-ac", "2"]);
        // Every packet is flushed at once: the agent, not ffmpeg's output buffer, decides the latency.
        // If a sound device stalls, the picture goes on after 0.1 s instead of ffmpeg's 10 s default.
        args.AddRange(["-max_interleave_delta", "100000", "-flush_packets", "1", "-flvflags", "no_duration_filesize", "-f", "flv", "pipe:1"]);
        return args;
    }

    private static void AddVideoInput(List<string> args, CapturePlan plan)
    {
        var fps = Num(plan.Fps);
        AddWallclockOffset(args, plan);
        var cursor = plan.Cursor ? "1" : "0";
        switch (plan.Video)
        {
            case X11Area a:
                args.AddRange(["-thread_queue_size", "512", "-f", "x11grab", "-framerate", fps, "-draw_mouse", cursor,
                    "-video_size", $"{a.Width}x{a.Height}", "-i", $"{a.Display}+{a.X},{a.Y}"]);
                break;
            case X11Window w:
                args.AddRange(["-thread_queue_size", "512", "-f", "x11grab", "-framerate", fps, "-draw_mouse", cursor,
                    "-window_id", $"0x{w.WindowId:x}", "-i", w.Display]);
                break;
            case DdaDisplay d:
                var dda = $"ddagrab=output_idx={d.OutputIndex}:framerate={fps}:draw_mouse={cursor}";
                if (d.Region is { } r)
                {
                    dda += $":video_size={r.Width}x{r.Height}:offset_x={r.X}:offset_y={r.Y}";
                }

                args.AddRange(["-f", "lavfi", "-i", dda]);
                break;
            case GfxWindow g:
                args.AddRange(["-f", "lavfi", "-i", $"gfxcapture=hwnd=0x{g.Handle:x}:max_framerate={fps}:capture_cursor={cursor}"]);
                break;
            case GdiCapture gdi:
                args.AddRange(["-thread_queue_size", "512", "-f", "gdigrab", "-framerate", fps, "-draw_mouse", cursor]);
                if (gdi.Region is { } gr)
                {
                    args.AddRange(["-offset_x", Num(gr.X), "-offset_y", Num(gr.Y), "-video_size", $"{gr.Width}x{gr.Height}"]);
                }

                args.AddRange(["-i", gdi.WindowTitle is null ? "desktop" : $"title={gdi.WindowTitle}"]);
                break;
            case TestPattern t:
                args.AddRange(["-re", "-f", "lavfi", "-i", $"testsrc2=size={t.Width}x{t.Height}:rate={fps}"]);
                break;
            default:
                throw new ArgumentOutOfRangeException(nameof(plan), plan.Video, "unknown video input");
        }
    }

    private static void AddWallclockOffset(List<string> args, CapturePlan plan)
    {
        if (plan.AlignsByWallclock)
        {
            args.AddRange(["-itsoffset", "-" + plan.WallclockBase!.Value.ToString("0.000", CultureInfo.InvariantCulture)]);
        }
    }

    private static void AddAudioInput(List<string> args, AudioInput audio, CapturePlan plan)
    {
        if (audio is PulseSource)
        {
            AddWallclockOffset(args, plan);
        }

        switch (audio)
        {
            case PulseSource p:
                // A small fragment: with the server default the sound arrives late in big lumps, and the
                // muxer holds every video frame back until the audio beside it is there (measured: 0.9 s).
                args.AddRange(["-thread_queue_size", "1024", "-f", "pulse", "-fragment_size", "3840", "-i", p.Name]);
                break;
            case DshowAudio d:
                args.AddRange(["-thread_queue_size", "1024", "-f", "dshow", "-i", $"audio={d.Name}"]);
                break;
            case ToneSource t:
                args.AddRange(["-re", "-f", "lavfi", "-i", $"sine=frequency={t.Frequency}:sample_rate=48000"]);
                break;
            default:
                throw new ArgumentOutOfRangeException(nameof(audio), audio, "unknown audio input");
        }
    }

    private static void BuildVideoGraph(StringBuilder graph, CapturePlan plan, Dictionary<OverlaySettings, int> imageInputs)
    {
        var steps = new List<string>();
        if (plan.Video is DdaDisplay or GfxWindow)
        {
            // Both hand over GPU (D3D11) frames; filters and software encoders need them in memory.
            steps.Add("hwdownload");
            steps.Add("format=bgra");
        }

        if (plan.OutputSize is { } size)
        {
            // Fit inside the requested size, keep the aspect ratio, pad the rest (windows are rarely 16:9).
            steps.Add($"scale={size.Width}:{size.Height}:force_original_aspect_ratio=decrease");
            steps.Add($"pad={size.Width}:{size.Height}:(ow-iw)/2:(oh-ih)/2");
        }
        else
        {
            steps.Add("scale=trunc(iw/2)*2:trunc(ih/2)*2"); // 4:2:0 needs even sizes
        }

        steps.Add($"fps={Num(plan.Fps)}");
        steps.Add("setsar=1");
        var label = "base";
        graph.Append("[0:v]").AppendJoin(',', steps).Append('[').Append(label).Append("];");

        var n = 0;
        foreach (var overlay in plan.Overlays)
        {
            var next = $"ov{n++}";
            if (overlay.Type == "text")
            {
                graph.Append('[').Append(label).Append(']').Append(DrawText(overlay, plan.DefaultFont)).Append('[').Append(next).Append("];");
            }
            else
            {
                var image = $"img{n}";
                graph.Append('[').Append(imageInputs[overlay]).Append(":v]format=rgba");
                if (Math.Abs(overlay.Scale - 1) > 1e-9)
                {
                    graph.Append(",scale=iw*").Append(Num(overlay.Scale)).Append(":ih*").Append(Num(overlay.Scale));
                }

                if (overlay.Opacity < 1)
                {
                    graph.Append(",colorchannelmixer=aa=").Append(Num(overlay.Opacity));
                }

                var (x, y) = OverlayPosition.Expressions(overlay.Position, overlay.Margin, "main_w", "main_h", "overlay_w", "overlay_h");
                graph.Append('[').Append(image).Append("];[").Append(label).Append("][").Append(image)
                    .Append("]overlay=x=").Append(x).Append(":y=").Append(y).Append(":eof_action=repeat:shortest=0[").Append(next).Append("];");
            }

            label = next;
        }

        var format = plan.Encoder.EndsWith("_vaapi", StringComparison.Ordinal) ? "format=nv12,hwupload" : "format=yuv420p";
        graph.Append('[').Append(label).Append(']').Append(format).Append("[vout];");
    }

    private static void BuildAudioGraph(StringBuilder graph, CapturePlan plan, List<int> audioInputs)
    {
        if (audioInputs.Count == 1)
        {
            graph.Append('[').Append(audioInputs[0]).Append(":a]aresample=48000:async=1[aout]");
            return;
        }

        // System sound and microphone: mixed, without amix halving the levels of both.
        graph.Append('[').Append(audioInputs[0]).Append(":a]aresample=48000:async=1[sys];")
            .Append('[').Append(audioInputs[1]).Append(":a]aresample=48000:async=1,volume=").Append(Num(plan.MicrophoneVolume)).Append("[mic];")
            .Append("[sys][mic]amix=inputs=2:duration=longest:dropout_transition=0:normalize=0[aout]");
    }

    private static string DrawText(OverlaySettings overlay, string defaultFont)
    {
        var (x, y) = OverlayPosition.Expressions(overlay.Position, overlay.Margin, "w", "h", "tw", "th");
        var font = string.IsNullOrEmpty(overlay.Font) ? defaultFont : overlay.Font;
        var text = new StringBuilder("drawtext=");
        text.Append(font.Contains('/') || font.Contains('\\') ? "fontfile=" : "font=").Append(Escape(font));
        if (overlay.TextFile is not null)
        {
            // Re-read every frame: a "now playing" file changes while we are live.
            text.Append(":textfile=").Append(Escape(overlay.TextFile)).Append(":reload=1");
        }
        else
        {
            text.Append(":text=").Append(Escape(overlay.Text!));
        }

        text.Append(":expansion=").Append(overlay.Expand ? "normal" : "none")
            .Append(":fontsize=").Append(Num(overlay.FontSize))
            .Append(":fontcolor=").Append(Escape(overlay.Color))
            .Append(":x=").Append(x).Append(":y=").Append(y);
        if (overlay.Box)
        {
            text.Append(":box=1:boxborderw=8:boxcolor=").Append(Escape(overlay.BoxColor));
        }

        return text.ToString();
    }

    /// <summary>
    /// Escapes a value for a filter option inside a filter graph: ffmpeg parses the graph first
    /// (where <c>[],;</c> and quotes are special) and then the option (where <c>:</c> is), so a
    /// Windows path or a title with a colon needs both levels.
    /// </summary>
    public static string Escape(string value)
    {
        var option = EscapeChars(value, "\\':");
        return EscapeChars(option, "\\'[],;");
    }

    private static string EscapeChars(string value, string special)
    {
        var builder = new StringBuilder(value.Length + 8);
        foreach (var c in value)
        {
            if (special.Contains(c))
            {
                builder.Append('\\');
            }

            builder.Append(c);
        }

        return builder.ToString();
    }

    private static string Num(double value) => value.ToString("0.###", CultureInfo.InvariantCulture);
}

/// <summary>Named overlay positions, turned into ffmpeg position expressions.</summary>
public static class OverlayPosition
{
    public static bool TryParse(string position, out (int X, int Y)? absolute)
    {
        absolute = null;
        if (position is "top-left" or "top-right" or "bottom-left" or "bottom-right" or "center")
        {
            return true;
        }

        var parts = position.Split(',');
        if (parts.Length == 2 && int.TryParse(parts[0], NumberStyles.None, CultureInfo.InvariantCulture, out var x)
            && int.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out var y))
        {
            absolute = (x, y);
            return true;
        }

        return false;
    }

    /// <summary>x and y expressions in the names the filter uses for the frame and the overlay sizes.</summary>
    public static (string X, string Y) Expressions(string position, int margin, string frameW, string frameH, string itemW, string itemH)
    {
        var m = margin.ToString(CultureInfo.InvariantCulture);
        return position switch
        {
            "top-left" => (m, m),
            "top-right" => ($"{frameW}-{itemW}-{m}", m),
            "bottom-left" => (m, $"{frameH}-{itemH}-{m}"),
            "bottom-right" => ($"{frameW}-{itemW}-{m}", $"{frameH}-{itemH}-{m}"),
            "center" => ($"({frameW}-{itemW})/2", $"({frameH}-{itemH})/2"),
            _ when TryParse(position, out var abs) && abs is { } p => (p.X.ToString(CultureInfo.InvariantCulture), p.Y.ToString(CultureInfo.InvariantCulture)),
            _ => throw new ProfileException($"position: '{position}' is not known"),
        };
    }
}
