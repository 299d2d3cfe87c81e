namespace Restream.Server.Storage;

/// <summary>
/// A destination platform's ingest facts (see ../shared/platforms.md). <see cref="Url"/> is null when
/// the platform hands out the whole server URL per stream or per account: the user pastes it.
/// </summary>
public sealed record Platform(
    string Id, string DisplayName, string? Url, bool RequiresRtmps, int? MaxBitrateKbps, int KeyframeSeconds, string[] Codecs, string Notes);

public static class Platforms
{
    public static readonly IReadOnlyList<Platform> All =
    [
        new("twitch", "Twitch", "rtmp://live.twitch.tv/app", false, 6000, 2, ["h264", "aac"], "CBR, keyframe every 2 s"),
        new("youtube", "YouTube", "rtmps://a.rtmps.youtube.com:443/live2", false, null, 2, ["h264", "hevc", "av1", "aac"], "keyframe at most 4 s; 2 s advised"),
        new("facebook", "Facebook", "rtmps://live-api-s.facebook.com:443/rtmp/", true, null, 2, ["h264", "aac"], "RTMPS only; 1080p60 at most"),
        new("kick", "Kick", "rtmps://fa723fc1b171.global-contribute.live-video.net/app", true, null, 2, ["h264", "aac"], "Amazon IVS based"),
        new("x", "X (Twitter)", null, false, null, 2, ["h264", "aac"], "server URL per account region: rtmps://<region>.pscp.tv:443/x"),
        new("telegram", "Telegram", null, true, null, 2, ["h264", "aac"], "server URL per stream, shown in the app: rtmps://dc<N>-1.rtmp.t.me/s/"),
        new("rumble", "Rumble", null, false, null, 2, ["h264", "aac"], "server URL per stream, shown in Rumble's live stream setup"),
        new("trovo", "Trovo", "rtmp://livepush.trovo.live/live/", false, null, 2, ["h264", "aac"], ""),
        new("srs", "SRS", null, false, null, 2, ["h264", "hevc", "aac"], "your own SRS: rtmp://<srs-host>:1935/live or srt://<srs-host>:10080?streamid=#!::r=live/<name>,m=publish"),
        new("custom", "Custom RTMP(S)/SRT", null, false, null, 2, ["h264", "hevc", "aac"], "any rtmp://, rtmps:// or srt:// URL"),
    ];

    public static Platform? Find(string id) => All.FirstOrDefault(p => string.Equals(p.Id, id, StringComparison.OrdinalIgnoreCase));
}
