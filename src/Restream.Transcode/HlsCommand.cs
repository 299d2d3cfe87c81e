using System.Globalization;
using System.Text;

namespace Restream.Transcode;

/// <summary>
/// Builds the one ffmpeg command of a transcode job: a single decode, a <c>split</c> into every
/// rendition (fps and scale per branch), libx264 with keyframes aligned to the segment length, and
/// the dash muxer writing fMP4 segments once with both a DASH manifest and HLS playlists over them
/// (<c>manifest.mpd</c>, <c>ffmpeg-master.m3u8</c>, <c>media_N.m3u8</c>). Audio is encoded once and
/// shared by every rendition.
/// </summary>
public static class HlsCommand
{
    /// <summary>The HLS master playlist as ffmpeg writes it; the service republishes it with FRAME-RATE.</summary>
    public const string FfmpegMasterName = "ffmpeg-master.m3u8";

    public static IReadOnlyList<string> Build(string input, string outputDirectory, IReadOnlyList<Rendition> ladder,
        int segmentSeconds = 2, int playlistSize = 6, string preset = "veryfast", LadderEncoder? encoder = null, double partSeconds = 0)
    {
        var inv = CultureInfo.InvariantCulture;
        encoder ??= LadderEncoder.Cpu;
        var args = new List<string> { "-hide_banner", "-nostdin", "-loglevel", "warning", "-progress", "pipe:1", "-stats_period", "1" };
        // Decode on the GPU and keep the frames there through split and scale, when the encoder is there too.
        args.AddRange(encoder.Frames switch
        {
            GpuFrames.Cuda => ["-hwaccel", "cuda", "-hwaccel_output_format", "cuda", "-extra_hw_frames", (4 * ladder.Count).ToString(inv)],
            GpuFrames.Vaapi => ["-vaapi_device", "/dev/dri/renderD128", "-hwaccel", "vaapi", "-hwaccel_output_format", "vaapi",
                "-extra_hw_frames", (4 * ladder.Count).ToString(inv)],
            _ when encoder.Name == "h264_vaapi" => ["-vaapi_device", "/dev/dri/renderD128"],
            _ => [],
        });
        args.AddRange(["-rw_timeout", "10000000", "-i", input]);

        var graph = new StringBuilder();
        graph.Append(CultureInfo.InvariantCulture, $"[0:v]split={ladder.Count}");
        for (var i = 0; i < ladder.Count; i++)
        {
            graph.Append(CultureInfo.InvariantCulture, $"[s{i}]");
        }

        for (var i = 0; i < ladder.Count; i++)
        {
            var r = ladder[i];
            var scale = encoder.Frames switch
            {
                GpuFrames.Cuda => $"scale_cuda={r.Width}:{r.Height}",
                GpuFrames.Vaapi => $"scale_vaapi=w={r.Width}:h={r.Height}",
                // Hardware encoders fed from memory take NV12 (VA-API uploads it); libx264 takes yuv420p (set below).
                _ when encoder.Name == "h264_vaapi" => $"scale={r.Width}:{r.Height},format=nv12,hwupload",
                _ when encoder.Name != "libx264" => $"scale={r.Width}:{r.Height},format=nv12",
                _ => $"scale={r.Width}:{r.Height}",
            };
            graph.Append(CultureInfo.InvariantCulture, $";[s{i}]fps={r.FrameRate.ToString("0.###", inv)},{scale}[v{i}]");
        }

        args.AddRange(["-filter_complex", graph.ToString()]);
        for (var i = 0; i < ladder.Count; i++)
        {
            var r = ladder[i];
            var gop = Math.Max(1, (int)Math.Round(r.FrameRate * segmentSeconds));
            args.AddRange(["-map", $"[v{i}]"]);
            args.AddRange([$"-c:v:{i}", encoder.Name, $"-b:v:{i}", $"{r.VideoKbps}k", $"-maxrate:v:{i}", $"{r.VideoKbps * 11 / 10}k",
                $"-bufsize:v:{i}", $"{r.VideoKbps * 2}k", $"-g:v:{i}", gop.ToString(inv), $"-keyint_min:v:{i}", gop.ToString(inv)]);
        }

        args.AddRange(["-map", "0:a?", "-c:a", "aac", "-b:a", $"{ladder[0].AudioKbps}k", "-ac", "2"]);
        // Keyframes exactly every segment: no scene-cut keyframes, whatever the encoder.
        args.AddRange(encoder.Name switch
        {
            "h264_nvenc" => ["-preset", "p4", "-rc", "cbr", "-no-scenecut", "1", "-forced-idr", "1"],
            "h264_qsv" => ["-preset", "veryfast", "-look_ahead", "0", "-idr_interval", "0"],
            "h264_vaapi" => ["-rc_mode", "CBR"],
            "h264_amf" => ["-usage", "transcoding", "-rc", "cbr"],
            _ => ["-preset", preset, "-sc_threshold", "0", "-pix_fmt", "yuv420p"],
        });
        args.AddRange(["-f", "dash", "-seg_duration", segmentSeconds.ToString(inv), "-window_size", playlistSize.ToString(inv),
            "-extra_window_size", "2", "-use_template", "1", "-use_timeline", "1",
            // Low-latency HLS: each segment is written as fragments of partSeconds as they are encoded.
            .. partSeconds > 0
                ? (string[])["-streaming", "1", "-frag_type", "duration", "-frag_duration", partSeconds.ToString("0.###", inv)]
                : ["-streaming", "0"],
            "-hls_playlist", "1", "-hls_master_name", FfmpegMasterName,
            "-adaptation_sets", "id=0,streams=v id=1,streams=a",
            "-init_seg_name", "init-$RepresentationID$.m4s", "-media_seg_name", "chunk-$RepresentationID$-$Number%05d$.m4s",
            Path.Combine(outputDirectory, "manifest.mpd")]);
        return args;
    }

    /// <summary>
    /// ffmpeg's master playlist with FRAME-RATE added to each variant (ffmpeg leaves it out; players use it
    /// to pick renditions on low-power devices). Variants come in ladder order.
    /// </summary>
    public static string AddFrameRates(string master, IReadOnlyList<Rendition> ladder)
    {
        var output = new StringBuilder();
        var variant = 0;
        foreach (var line in master.Split('\n'))
        {
            var text = line.TrimEnd('\r');
            if (text.StartsWith("#EXT-X-STREAM-INF:", StringComparison.Ordinal) && variant < ladder.Count && !text.Contains("FRAME-RATE=", StringComparison.Ordinal))
            {
                text += ",FRAME-RATE=" + ladder[variant].FrameRate.ToString("0.000", CultureInfo.InvariantCulture);
                variant++;
            }

            output.Append(text).Append('\n');
        }

        return output.ToString().TrimEnd('\n') + "\n";
    }
}

/// <summary>Where frames live between decode and encode.</summary>
public enum GpuFrames
{
    None,
    Cuda,
    Vaapi,
}

/// <summary>The ladder's encoder and whether decode and scaling run on the same GPU.</summary>
public sealed record LadderEncoder(string Name, GpuFrames Frames)
{
    public static readonly IReadOnlyList<string> Names = ["auto", "libx264", "h264_nvenc", "h264_qsv", "h264_vaapi", "h264_amf"];

    public static readonly LadderEncoder Cpu = new("libx264", GpuFrames.None);

    /// <summary>
    /// From what the probe found: NVENC with CUDA decode and <c>scale_cuda</c>, VA-API with VA-API
    /// decode and <c>scale_vaapi</c>, Quick Sync from memory, else libx264. <paramref name="wanted"/>
    /// is <c>auto</c> or an encoder name (<c>Restream:Transcode:Encoder</c>).
    /// </summary>
    public static LadderEncoder Choose(string wanted, EncoderReport report, IReadOnlySet<string> filters)
    {
        var name = wanted == "auto" ? report.ChosenH264 : wanted;
        if (report.Encoders.FirstOrDefault(e => e.Name == name) is { Works: false })
        {
            return Cpu; // asked for, but it does not work on this host (no GPU, no driver): the CPU carries on
        }

        return name switch
        {
            "h264_nvenc" => new(name, filters.Contains("scale_cuda") ? GpuFrames.Cuda : GpuFrames.None),
            "h264_vaapi" => new(name, filters.Contains("scale_vaapi") ? GpuFrames.Vaapi : GpuFrames.None),
            "h264_qsv" or "h264_amf" => new(name, GpuFrames.None),
            _ => Cpu,
        };
    }
}
