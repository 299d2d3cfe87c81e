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

    private static IResult Serve(string channel, string path, HttpContext http, TranscodeService transcode)
    {
        var root = transcode.OutputRoot;
        var full = Path.GetFullPath(Path.Combine(root, channel, path));
        if (!full.StartsWith(root + Path.DirectorySeparatorChar, StringComparison.Ordinal) || !File.Exists(full))
        {
            return Results.NotFound();
        }

        var manifest = full.EndsWith(".m3u8", StringComparison.Ordinal) || full.EndsWith(".mpd", StringComparison.Ordinal);
        http.Response.Headers.AccessControlAllowOrigin = "*";
        // Manifests change every segment; segments never change once written.
        http.Response.Headers.CacheControl = manifest ? "no-cache" : "public, max-age=3600, immutable";
        var type = Path.GetExtension(full) switch
        {
            ".m3u8" => "application/vnd.apple.mpegurl",
            ".mpd" => "application/dash+xml",
            ".m4s" => "video/iso.segment",
            ".mp4" => "video/mp4",
            _ => "application/octet-stream",
        };
        return Results.File(full, type, enableRangeProcessing: !manifest);
    }
}
