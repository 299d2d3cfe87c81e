using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;
using Restream.Media.Mp4;

namespace Restream.Transcode;

/// <summary>A low-latency media playlist and the newest part it lists (for blocking reloads).</summary>
public sealed record LowLatencyMedia(string Text, long LastSequence, int LastPart, long LastComplete);

/// <summary>
/// Low-latency HLS (RFC 8216bis, EXT-X-PART): ffmpeg writes each 2 s fMP4 segment as fragments of
/// <c>PART-TARGET</c> seconds as they are encoded; this turns ffmpeg's segment-level media playlist
/// into one that also lists those fragments as parts (byte ranges of the segment files), for the
/// last few segments and for the segment still being written, so players can start and stay within
/// about a second of live instead of three segments.
/// </summary>
public static partial class LowLatencyPlaylist
{
    /// <summary>Segments (besides the one being written) whose parts are listed.</summary>
    public const int SegmentsWithParts = 3;

    /// <summary>ffmpeg writes a segment under this suffix and renames it when the segment is complete.</summary>
    public const string GrowingSuffix = ".tmp";

    /// <param name="ffmpegPlaylist">ffmpeg's <c>media_N.m3u8</c>.</param>
    /// <param name="read">Reads a file of the rendition folder by name (null if missing).</param>
    public static LowLatencyMedia Build(string ffmpegPlaylist, Func<string, byte[]?> read, double partTarget)
    {
        var lines = ffmpegPlaylist.Split('\n', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
        var target = 2;
        long sequence = 0;
        string? map = null;
        var segments = new List<(string Uri, List<string> Tags)>();
        var pending = new List<string>();
        var ended = false;
        foreach (var line in lines)
        {
            if (line.StartsWith("#EXT-X-TARGETDURATION:", StringComparison.Ordinal))
            {
                target = int.Parse(line[22..], CultureInfo.InvariantCulture);
            }
            else if (line.StartsWith("#EXT-X-MEDIA-SEQUENCE:", StringComparison.Ordinal))
            {
                sequence = long.Parse(line[22..], CultureInfo.InvariantCulture);
            }
            else if (line.StartsWith("#EXT-X-MAP:", StringComparison.Ordinal))
            {
                map = MapUri().Match(line).Groups[1].Value;
            }
            else if (line == "#EXT-X-ENDLIST")
            {
                ended = true;
            }
            else if (line.StartsWith("#EXTINF:", StringComparison.Ordinal) || line.StartsWith("#EXT-X-PROGRAM-DATE-TIME:", StringComparison.Ordinal))
            {
                pending.Add(line);
            }
            else if (!line.StartsWith('#'))
            {
                segments.Add((line, pending));
                pending = [];
            }
        }

        var track = map is not null && read(map) is { } init ? Fmp4.ReadTrack(init) : null;
        var text = new StringBuilder();
        text.Append("#EXTM3U\n#EXT-X-VERSION:9\n");
        text.Append(CultureInfo.InvariantCulture, $"#EXT-X-TARGETDURATION:{target}\n");
        // Players hold back three parts from live; they may block on the next part instead of polling.
        text.Append(CultureInfo.InvariantCulture, $"#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK={3 * partTarget:0.###}\n");
        text.Append(CultureInfo.InvariantCulture, $"#EXT-X-PART-INF:PART-TARGET={partTarget:0.###}\n");
        text.Append(CultureInfo.InvariantCulture, $"#EXT-X-MEDIA-SEQUENCE:{sequence}\n");
        if (map is not null)
        {
            text.Append(CultureInfo.InvariantCulture, $"#EXT-X-MAP:URI=\"{map}\"\n");
        }

        var lastSequence = sequence + segments.Count - 1;
        var lastPart = -1;
        for (var i = 0; i < segments.Count; i++)
        {
            var (uri, tags) = segments[i];
            if (track is { } t && i >= segments.Count - SegmentsWithParts && read(uri) is { } bytes)
            {
                AppendParts(text, uri, Fmp4.ScanFragments(bytes, t));
            }

            foreach (var tag in tags)
            {
                text.Append(tag).Append('\n');
            }

            text.Append(uri).Append('\n');
        }

        if (ended)
        {
            text.Append("#EXT-X-ENDLIST\n");
        }
        else if (track is { } t && segments.Count > 0 && NextSegment(segments[^1].Uri) is { } next
                 && (read(next) ?? read(next + GrowingSuffix)) is { } growing)
        {
            // The segment ffmpeg is writing now (as name.tmp until it is complete): its finished fragments are parts already.
            var parts = Fmp4.ScanFragments(growing, t);
            AppendParts(text, next, parts);
            lastSequence++;
            lastPart = parts.Count - 1;
        }

        return new LowLatencyMedia(text.ToString(), lastSequence, lastPart, sequence + segments.Count - 1);
    }

    private static void AppendParts(StringBuilder text, string uri, List<Fmp4Fragment> parts)
    {
        foreach (var p in parts)
        {
            text.Append(CultureInfo.InvariantCulture, $"#EXT-X-PART:DURATION={p.Duration:0.#####},URI=\"{uri}\",BYTERANGE=\"{p.Length}@{p.Offset}\"");
            text.Append(p.Independent ? ",INDEPENDENT=YES\n" : "\n");
        }
    }

    /// <summary>"chunk-0-00012.m4s" → "chunk-0-00013.m4s".</summary>
    public static string? NextSegment(string uri)
    {
        var match = SegmentNumber().Match(uri);
        if (!match.Success)
        {
            return null;
        }

        var digits = match.Groups[1].Value;
        var next = (long.Parse(digits, CultureInfo.InvariantCulture) + 1).ToString(new string('0', digits.Length), CultureInfo.InvariantCulture);
        return uri[..match.Groups[1].Index] + next + uri[(match.Groups[1].Index + digits.Length)..];
    }

    /// <summary>Whether a playlist already holds what a blocking reload asked for (<c>_HLS_msn</c>, <c>_HLS_part</c>).</summary>
    public static bool Satisfies(LowLatencyMedia media, long msn, int? part) => part is null
        ? media.LastComplete >= msn
        : media.LastComplete >= msn || (media.LastSequence == msn && media.LastPart >= part);

    [GeneratedRegex("URI=\"([^\"]+)\"")]
    private static partial Regex MapUri();

    [GeneratedRegex(@"(\d+)\.m4s$")]
    private static partial Regex SegmentNumber();
}
