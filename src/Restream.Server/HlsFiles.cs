using System.Globalization;
using Microsoft.Extensions.Options;
using Restream.Transcode;

namespace Restream.Server;

/// <summary>
/// Serves the transcoder's output: HLS at /hls/{channel}/master.m3u8 and DASH at
/// /dash/{channel}/manifest.mpd (the same fMP4 segments), with the right types, CORS and caching.
/// </summary>
public static class HlsFiles
{
    public static void MapHlsFiles(this WebApplication app)
    {
        app.MapGet("/hls/{channel}/{**path}", Serve);
        app.MapGet("/dash/{channel}/{**path}", Serve);
    }

    private static async Task<IResult> Serve(string channel, string path, HttpContext http, TranscodeService transcode, IOptions<TranscodeOptions> options)
    {
        var root = transcode.OutputRoot;
        var full = Path.GetFullPath(Path.Combine(root, channel, path));
        if (!full.StartsWith(root + Path.DirectorySeparatorChar, StringComparison.Ordinal))
        {
            return Results.NotFound();
        }

        var growing = false;
        if (!File.Exists(full))
        {
            // Low-latency parts of the segment ffmpeg is still writing (it renames it when done).
            if (!options.Value.LowLatency || !full.EndsWith(".m4s", StringComparison.Ordinal) || !File.Exists(full + LowLatencyPlaylist.GrowingSuffix))
            {
                return Results.NotFound();
            }

            full += LowLatencyPlaylist.GrowingSuffix;
            growing = true;
        }

        var manifest = full.EndsWith(".m3u8", StringComparison.Ordinal) || full.EndsWith(".mpd", StringComparison.Ordinal);
        http.Response.Headers.AccessControlAllowOrigin = "*";
        var lowLatency = options.Value.LowLatency;
        if (lowLatency && manifest && Path.GetFileName(full).StartsWith("media_", StringComparison.Ordinal))
        {
            return await LowLatencyAsync(full, http, options.Value).ConfigureAwait(false);
        }

        // Manifests change every segment; segments never change once written (in low-latency mode the
        // newest one grows part by part until ffmpeg moves on).
        growing |= lowLatency && DateTime.UtcNow - File.GetLastWriteTimeUtc(full) < TimeSpan.FromSeconds(options.Value.SegmentSeconds + 1);
        http.Response.Headers.CacheControl = manifest || growing ? "no-cache" : "public, max-age=3600, immutable";
        var type = Path.GetExtension(growing ? full[..^LowLatencyPlaylist.GrowingSuffix.Length] : full) switch
        {
            ".m3u8" => "application/vnd.apple.mpegurl",
            ".mpd" => "application/dash+xml",
            ".m4s" => "video/iso.segment",
            ".mp4" => "video/mp4",
            _ => "application/octet-stream",
        };
        return Results.File(full, type, enableRangeProcessing: !manifest);
    }

    /// <summary>
    /// A media playlist with its parts; with <c>_HLS_msn</c> (and <c>_HLS_part</c>) the request is held
    /// until that segment or part exists — a blocking playlist reload — for at most three target durations.
    /// </summary>
    private static async Task<IResult> LowLatencyAsync(string playlist, HttpContext http, TranscodeOptions options)
    {
        var folder = Path.GetDirectoryName(playlist)!;
        long? msn = long.TryParse(http.Request.Query["_HLS_msn"], NumberStyles.None, CultureInfo.InvariantCulture, out var m) ? m : null;
        int? part = int.TryParse(http.Request.Query["_HLS_part"], NumberStyles.None, CultureInfo.InvariantCulture, out var p) ? p : null;
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(3 * options.SegmentSeconds);
        while (true)
        {
            LowLatencyMedia media;
            try
            {
                media = LowLatencyPlaylist.Build(await File.ReadAllTextAsync(playlist, http.RequestAborted).ConfigureAwait(false),
                    name => ReadShared(Path.Combine(folder, Path.GetFileName(name))), options.PartSeconds);
            }
            catch (IOException)
            {
                media = new LowLatencyMedia("", -1, -1, -1); // ffmpeg was rewriting it: look again
            }

            if (media.Text.Length > 0 && (msn is null || LowLatencyPlaylist.Satisfies(media, msn.Value, part)))
            {
                http.Response.Headers.CacheControl = "no-cache";
                return Results.Text(media.Text, "application/vnd.apple.mpegurl");
            }

            if (DateTime.UtcNow > deadline)
            {
                // RFC 8216bis 6.2.5.2: a request for a part too far in the future may be answered with an error.
                return Results.Problem(statusCode: StatusCodes.Status503ServiceUnavailable,
                    title: "the requested segment or part is not there yet", detail: $"_HLS_msn={msn} _HLS_part={part}");
            }

            await Task.Delay(50, http.RequestAborted).ConfigureAwait(false);
        }
    }

    /// <summary>Segment bytes by path, length and write time: every viewer's playlist (and every blocking poll) shares one read.</summary>
    private static readonly System.Collections.Concurrent.ConcurrentDictionary<string, (long Length, DateTime Written, DateTime Used, byte[] Bytes)> Segments = new();

    private static byte[]? ReadShared(string path)
    {
        try
        {
            var info = new FileInfo(path);
            if (!info.Exists)
            {
                return null;
            }

            var now = DateTime.UtcNow;
            if (Segments.TryGetValue(path, out var cached) && cached.Length == info.Length && cached.Written == info.LastWriteTimeUtc)
            {
                Segments[path] = cached with { Used = now };
                return cached.Bytes;
            }

            using var file = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
            var bytes = new byte[file.Length];
            file.ReadExactly(bytes);
            Segments[path] = (bytes.Length, info.LastWriteTimeUtc, now, bytes);
            if (Segments.Count > 128)
            {
                foreach (var (key, entry) in Segments)
                {
                    if (now - entry.Used > TimeSpan.FromSeconds(10))
                    {
                        Segments.TryRemove(key, out _);
                    }
                }
            }

            return bytes;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }
}
