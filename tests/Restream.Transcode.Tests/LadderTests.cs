namespace Restream.Transcode.Tests;

public sealed class LadderTests
{
    [Fact]
    public void A_1080p60_source_gets_the_whole_ladder_with_60_fps_only_on_top()
    {
        var ladder = LadderPlanner.Plan(1920, 1080, 60, 8000);
        Assert.Equal(["1080p60", "720p", "480p", "360p"], ladder.Select(r => r.Name));
        Assert.Equal([(1920, 1080, 60.0), (1280, 720, 30.0), (854, 480, 30.0), (640, 360, 30.0)], ladder.Select(r => (r.Width, r.Height, r.FrameRate)));
        Assert.Equal([6000, 3000, 1200, 700], ladder.Select(r => r.VideoKbps));
    }

    [Fact]
    public void Never_upscales_and_never_inflates_the_bitrate()
    {
        var ladder = LadderPlanner.Plan(1280, 720, 30, 2000);
        Assert.DoesNotContain(ladder, r => r.Height > 720);
        Assert.Equal(2000, ladder[0].VideoKbps); // capped at the source's 2 Mb/s
        Assert.All(ladder, r => Assert.True(r.FrameRate <= 30));
    }

    [Fact]
    public void Keeps_the_source_aspect_ratio_with_even_sizes()
    {
        var ladder = LadderPlanner.Plan(2560, 1080, 30, 0); // 21:9
        Assert.All(ladder, r => Assert.Equal(0, r.Width % 2));
        Assert.Equal(1706, ladder.Single(r => r.Height == 720).Width);
    }

    [Fact]
    public void A_tiny_source_passes_through_once()
    {
        var ladder = Assert.Single(LadderPlanner.Plan(320, 240, 15, 300));
        Assert.Equal((320, 240, 15.0), (ladder.Width, ladder.Height, ladder.FrameRate));
    }

    [Fact]
    public void One_ffmpeg_decodes_once_and_splits_into_every_rendition_with_aligned_keyframes()
    {
        var ladder = LadderPlanner.Plan(1280, 720, 30, 3000);
        var args = HlsCommand.Build("rtmp://127.0.0.1:1935/live/main", "/out", ladder, segmentSeconds: 2).ToList();
        Assert.Single(args, a => a == "-i");
        var graph = args[args.IndexOf("-filter_complex") + 1];
        Assert.StartsWith("[0:v]split=3[s0][s1][s2]", graph);
        Assert.Contains("[s2]fps=30,scale=640:360[v2]", graph);
        Assert.Equal("60", args[args.IndexOf("-g:v:0") + 1]); // 2 s segments at 30 fps
        Assert.Equal("0", args[args.IndexOf("-sc_threshold") + 1]);
        Assert.Equal("dash", args[args.IndexOf("-f") + 1]);
        Assert.Equal("1", args[args.IndexOf("-hls_playlist") + 1]); // HLS playlists over the same segments
        Assert.Equal("id=0,streams=v id=1,streams=a", args[args.IndexOf("-adaptation_sets") + 1]);
        Assert.Single(args, a => a == "0:a?"); // audio encoded once, shared
        Assert.EndsWith("manifest.mpd", args[^1]);
    }

    [Fact]
    public void Master_playlist_gets_each_renditions_frame_rate()
    {
        var ladder = LadderPlanner.Plan(1920, 1080, 60, 8000);
        var master = "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1,RESOLUTION=1920x1080\nmedia_0.m3u8\n#EXT-X-STREAM-INF:BANDWIDTH=2,RESOLUTION=1280x720\nmedia_1.m3u8\n";
        var result = HlsCommand.AddFrameRates(master, ladder);
        Assert.Contains("RESOLUTION=1920x1080,FRAME-RATE=60.000\n", result);
        Assert.Contains("RESOLUTION=1280x720,FRAME-RATE=30.000\n", result);
        Assert.Equal(result, HlsCommand.AddFrameRates(result, ladder)); // idempotent
    }
}
