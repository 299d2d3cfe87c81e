using Restream.Transcode;

namespace Restream.Server;

/// <summary>Serves the transcoder's HLS output at /hls/{channel}/… with the right types, CORS and caching.</summary>
public static class HlsFiles
{
    public static void MapHlsFiles(this WebApplication app)
    {
        app.MapGet("/hls/{channel}/{**path}", (string channel, string path, HttpContext http, TranscodeService transcode) =>
        {
            var root = transcode.OutputRoot;
            var full = Path.GetFullPath(Path.Combine(root, channel, path));
            if (!full.StartsWith(root + Path.DirectorySeparatorChar, StringComparison.Ordinal) || !File.Exists(full))
            {
                return Results.NotFound();
            }

            var playlist = full.EndsWith(".m3u8", StringComparison.Ordinal);
            http.Response.Headers.AccessControlAllowOrigin = "*";
            // Playlists change every segment; segments never change once written.
            http.Response.Headers.CacheControl = playlist ? "no-cache" : "public, max-age=3600, immutable";
            var type = Path.GetExtension(full) switch
            {
                ".m3u8" => "application/vnd.apple.mpegurl",
                ".m4s" => "video/iso.segment",
                ".mp4" => "video/mp4",
                ".ts" => "video/mp2t",
                _ => "application/octet-stream",
            };
            return Results.File(full, type, enableRangeProcessing: !playlist);
        });
    }
}
