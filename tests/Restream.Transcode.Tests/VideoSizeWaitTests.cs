using Restream.Ingest.Hub;

namespace Restream.Transcode.Tests;

/// <summary>What the log says when a live stream gives the transcoder no picture size to plan a ladder from.</summary>
public sealed class VideoSizeWaitTests
{
    [Fact]
    public void Each_reason_a_stream_has_no_usable_video_size_is_named()
    {
        Assert.Contains("no video", TranscodeService.WhyNoVideoSize(null));
        Assert.Contains("audio-only", TranscodeService.WhyNoVideoSize(new StreamMediaInfo(null, 0, 0, null, null, "AAC", 48000, 2)));
        Assert.Contains("HEVC", TranscodeService.WhyNoVideoSize(new StreamMediaInfo("HEVC", 0, 0, 30, null, "AAC", 48000, 2)));
        Assert.Contains("only H.264", TranscodeService.WhyNoVideoSize(new StreamMediaInfo("HEVC", 0, 0, 30, null, "AAC", 48000, 2)));
        Assert.Contains("H.264 sequence header", TranscodeService.WhyNoVideoSize(new StreamMediaInfo("H264", 0, 0, null, null, "AAC", 48000, 2)));
    }
}
