namespace Restream.Transcode.Tests;

/// <summary>The encoder probe on outputs recorded from Debian's ffmpeg 5.1 on a host without GPUs.</summary>
public sealed class EncoderProbeTests
{
    private const string Encoders = """
        Encoders:
         V..... = Video
         A..... = Audio
         ------
         V....D libx264              libx264 H.264 / AVC / MPEG-4 AVC / MPEG-4 part 10 (codec h264)
         V....D h264_nvenc           NVIDIA NVENC H.264 encoder (codec h264)
         V..... h264_qsv             H.264 / AVC / MPEG-4 AVC / MPEG-4 part 10 (Intel Quick Sync Video acceleration) (codec h264)
         V....D h264_vaapi           H.264/AVC (VAAPI) (codec h264)
         V....D libx265              libx265 H.265 / HEVC (codec hevc)
         V..... libsvtav1            SVT-AV1(Scalable Video Technology for AV1) encoder (codec av1)
         A....D aac                  AAC (Advanced Audio Coding)
        """;

    [Fact]
    public void Encoders_listing_gives_the_names()
    {
        var names = EncoderProbe.ParseEncoders(Encoders);
        Assert.Contains("libx264", names);
        Assert.Contains("h264_nvenc", names);
        Assert.Contains("aac", names);
        Assert.DoesNotContain("h264_amf", names);
        Assert.DoesNotContain("=", names);
    }

    [Theory]
    [InlineData("h264_nvenc", "[h264_nvenc @ 0x5641f47d18c0] Cannot load libcuda.so.1\nError initializing output stream 0:0", "no NVIDIA GPU or driver")]
    [InlineData("h264_nvenc", "[h264_nvenc @ 0x1] No NVENC capable devices found", "no NVIDIA GPU or driver")]
    [InlineData("h264_qsv", "[h264_qsv @ 0x5567253508c0] Error initializing an internal MFX session: unsupported (-3)", "no Intel Quick Sync")]
    [InlineData("h264_vaapi", "Failed to set value '/dev/dri/renderD128' for option 'vaapi_device': Invalid argument", "no VA-API device")]
    [InlineData("h264_amf", "Unknown encoder 'h264_amf'", "built without h264_amf")]
    public void Failures_are_explained_in_plain_words(string encoder, string stderr, string expected)
    {
        Assert.Contains(expected, EncoderProbe.Explain(encoder, stderr));
    }

    [Fact]
    public void Vaapi_test_encode_uploads_frames_to_the_device()
    {
        var args = EncoderProbe.TestArguments("h264_vaapi");
        Assert.Equal("/dev/dri/renderD128", args[args.ToList().IndexOf("-vaapi_device") + 1]);
        Assert.Equal("format=nv12,hwupload", args[args.ToList().IndexOf("-vf") + 1]);
        Assert.Equal(["-c:v", "libx264", "-f", "null", "-"], EncoderProbe.TestArguments("libx264").TakeLast(5));
    }

    [Fact]
    public async Task This_host_has_libx264_at_least_and_it_is_chosen_when_no_GPU_works()
    {
        // A real probe with Debian's ffmpeg: CI has no GPU, so hardware encoders report why they fail.
        var report = await EncoderProbe.ProbeAsync(CancellationToken.None);
        Assert.Contains(report.Encoders, e => e.Name == "libx264" && e.Works);
        Assert.All(report.Encoders.Where(e => !e.Works), e => Assert.False(string.IsNullOrWhiteSpace(e.Reason)));
        var hardwareWorks = report.Encoders.Any(e => e.Works && e.Name is "h264_nvenc" or "h264_qsv" or "h264_vaapi" or "h264_amf");
        Assert.Equal(hardwareWorks ? report.Encoders.First(e => e.Works && e.Name.StartsWith("h264", StringComparison.Ordinal)).Name : "libx264", report.ChosenH264);
    }
}
