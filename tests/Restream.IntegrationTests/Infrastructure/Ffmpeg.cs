using System.Globalization;
using System.Text.Json;

namespace Restream.IntegrationTests.Infrastructure;

public sealed record ProbedStream(string CodecType, string CodecName, int Width, int Height, long Frames);

/// <summary>Real ffmpeg and ffprobe, as a streamer's encoder and as the platforms' check.</summary>
public static class Ffmpeg
{
    public const int Fps = 30;

    /// <summary>
    /// Publishes a 720p30 H.264 + AAC test pattern in real time (<c>-re</c>) for <paramref name="seconds"/>:
    /// exactly <c>seconds * 30</c> video frames, a keyframe every 2 s.
    /// </summary>
    public static ExternalProcess Publish(string url, int seconds, string size = "1280x720", int bitrateKbps = 3000, string format = "flv",
        IEnumerable<string>? outputOptions = null) =>
        ExternalProcess.Start("ffmpeg",
        [
            "-hide_banner", "-nostdin", "-loglevel", "warning", "-re",
            "-f", "lavfi", "-i", $"testsrc2=size={size}:rate={Fps}",
            "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
            "-t", seconds.ToString(CultureInfo.InvariantCulture),
            "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-pix_fmt", "yuv420p",
            "-g", (2 * Fps).ToString(CultureInfo.InvariantCulture), "-b:v", $"{bitrateKbps}k",
            "-c:a", "aac", "-b:a", "128k",
            "-f", format, .. outputOptions ?? [], url,
        ]);

    /// <summary>Decodes every frame of a file or URL and reports each stream.</summary>
    public static async Task<IReadOnlyList<ProbedStream>> ProbeAsync(string input, TimeSpan timeout, bool countFrames = true)
    {
        // A live HLS playlist never ends: count frames only in inputs that do.
        var (code, output) = await ExternalProcess.RunAsync("ffprobe",
            ["-v", "error", .. countFrames ? ["-count_frames"] : Array.Empty<string>(), "-show_entries", "stream=codec_type,codec_name,width,height,nb_read_frames", "-of", "json", input],
            timeout);
        if (code != 0)
        {
            throw new InvalidOperationException($"ffprobe {input} failed ({code}): {output}");
        }

        var json = output[output.IndexOf('{')..];
        using var doc = JsonDocument.Parse(json);
        var streams = new List<ProbedStream>();
        foreach (var s in doc.RootElement.GetProperty("streams").EnumerateArray())
        {
            streams.Add(new ProbedStream(
                s.GetProperty("codec_type").GetString() ?? "",
                s.TryGetProperty("codec_name", out var name) ? name.GetString() ?? "" : "",
                s.TryGetProperty("width", out var w) ? w.GetInt32() : 0,
                s.TryGetProperty("height", out var h) ? h.GetInt32() : 0,
                s.TryGetProperty("nb_read_frames", out var n) && long.TryParse(n.GetString(), out var frames) ? frames : 0));
        }

        return streams;
    }
}
