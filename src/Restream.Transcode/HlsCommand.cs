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
        int segmentSeconds = 2, int playlistSize = 6, string preset = "veryfast")
    {
        var inv = CultureInfo.InvariantCulture;
        var args = new List<string>
        {
            "-hide_banner", "-nostdin", "-loglevel", "warning", "-progress", "pipe:1", "-stats_period", "1",
            "-rw_timeout", "10000000", "-i", input,
        };

        var graph = new StringBuilder();
        graph.Append(CultureInfo.InvariantCulture, $"[0:v]split={ladder.Count}");
        for (var i = 0; i < ladder.Count; i++)
        {
            graph.Append(CultureInfo.InvariantCulture, $"[s{i}]");
        }

        for (var i = 0; i < ladder.Count; i++)
        {
            var r = ladder[i];
            graph.Append(CultureInfo.InvariantCulture, $";[s{i}]fps={r.FrameRate.ToString("0.###", inv)},scale={r.Width}:{r.Height}[v{i}]");
        }

        args.AddRange(["-filter_complex", graph.ToString()]);
        for (var i = 0; i < ladder.Count; i++)
        {
            var r = ladder[i];
            var gop = Math.Max(1, (int)Math.Round(r.FrameRate * segmentSeconds));
            args.AddRange(["-map", $"[v{i}]"]);
            args.AddRange([$"-c:v:{i}", "libx264", $"-b:v:{i}", $"{r.VideoKbps}k", $"-maxrate:v:{i}", $"{r.VideoKbps * 11 / 10}k",
                $"-bufsize:v:{i}", $"{r.VideoKbps * 2}k", $"-g:v:{i}", gop.ToString(inv), $"-keyint_min:v:{i}", gop.ToString(inv)]);
        }

        args.AddRange(["-map", "0:a?", "-c:a", "aac", "-b:a", $"{ladder[0].AudioKbps}k", "-ac", "2"]);
        args.AddRange(["-preset", preset, "-sc_threshold", "0", "-pix_fmt", "yuv420p"]);
        args.AddRange(["-f", "dash", "-seg_duration", segmentSeconds.ToString(inv), "-window_size", playlistSize.ToString(inv),
            "-extra_window_size", "2", "-use_template", "1", "-use_timeline", "1", "-streaming", "0",
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
