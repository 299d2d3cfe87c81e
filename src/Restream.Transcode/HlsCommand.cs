using System.Globalization;
using System.Text;

namespace Restream.Transcode;

/// <summary>
/// Builds the one ffmpeg command of a transcode job: a single decode, a <c>split</c> into every
/// rendition (fps and scale per branch), libx264 with keyframes aligned to the segment length, and HLS
/// (fMP4 segments, a master playlist) written into one folder per rendition.
/// </summary>
public static class HlsCommand
{
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
            args.AddRange(["-map", $"[v{i}]", "-map", "0:a?"]);
            args.AddRange([$"-c:v:{i}", "libx264", $"-b:v:{i}", $"{r.VideoKbps}k", $"-maxrate:v:{i}", $"{r.VideoKbps * 11 / 10}k",
                $"-bufsize:v:{i}", $"{r.VideoKbps * 2}k", $"-g:v:{i}", gop.ToString(inv), $"-keyint_min:v:{i}", gop.ToString(inv)]);
            args.AddRange([$"-c:a:{i}", "aac", $"-b:a:{i}", $"{r.AudioKbps}k"]);
        }

        args.AddRange(["-preset", preset, "-sc_threshold", "0", "-pix_fmt", "yuv420p", "-ac", "2"]);
        args.AddRange(["-f", "hls", "-hls_time", segmentSeconds.ToString(inv), "-hls_list_size", playlistSize.ToString(inv),
            "-hls_flags", "delete_segments+independent_segments+program_date_time", "-hls_segment_type", "fmp4",
            "-master_pl_name", "master.m3u8",
            "-var_stream_map", string.Join(' ', ladder.Select((r, i) => $"v:{i},a:{i},name:{r.Name}")),
            "-hls_segment_filename", Path.Combine(outputDirectory, "%v", "segment_%05d.m4s"),
            Path.Combine(outputDirectory, "%v", "index.m3u8")]);
        return args;
    }
}
