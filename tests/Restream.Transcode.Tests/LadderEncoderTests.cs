namespace Restream.Transcode.Tests;

/// <summary>
/// The ladder on GPUs. This machine has none, so these pin the commands the worker runs where one is
/// (recorded probe results stand in for the GPU); the libx264 ladder runs for real in the integration tests.
/// </summary>
public sealed class LadderEncoderTests
{
    private static readonly IReadOnlyList<Rendition> Ladder = LadderPlanner.Plan(1920, 1080, 60, 8000);

    private static EncoderReport Report(params (string Name, bool Works)[] encoders) =>
        new([.. encoders.Select(e => new EncoderStatus(e.Name, true, e.Works, e.Works ? null : "no device"))],
            encoders.FirstOrDefault(e => e.Works && e.Name.StartsWith("h264", StringComparison.Ordinal)).Name ?? "libx264");

    private static readonly IReadOnlySet<string> DebianFilters = EncoderProbe.ParseFilters("""
        Filters:
          T.. = Timeline support
          ... = Video/audio
          --
         ... hwupload_cuda     V->V       Upload a system memory frame to a CUDA device.
         ... scale_cuda        V->V       GPU accelerated video resizer
         ... scale_qsv         V->V       QuickSync video scaling and format conversion
         ... scale_vaapi       V->V       Scale to/from VAAPI surfaces.
         TSC scale             V->V       Scale the input video size and/or convert the image format.
         ... split             V->N       Pass on the input to several outputs.
        """);

    [Fact]
    public void Filter_listing_is_parsed_by_name()
    {
        Assert.Equal(["hwupload_cuda", "scale", "scale_cuda", "scale_qsv", "scale_vaapi", "split"], DebianFilters.Order());
    }

    [Fact]
    public void Nvenc_decodes_and_scales_on_the_gpu()
    {
        var encoder = LadderEncoder.Choose("auto", Report(("h264_nvenc", true), ("libx264", true)), DebianFilters);
        Assert.Equal(new LadderEncoder("h264_nvenc", GpuFrames.Cuda), encoder);
        var args = HlsCommand.Build("rtmp://127.0.0.1/live/main", "/out", Ladder, encoder: encoder);
        var joined = string.Join(' ', args);
        Assert.StartsWith("-hide_banner -nostdin -loglevel warning -progress pipe:1 -stats_period 1 -hwaccel cuda -hwaccel_output_format cuda -extra_hw_frames 16 -rw_timeout", joined);
        var graph = args[args.ToList().IndexOf("-filter_complex") + 1];
        Assert.Equal("[0:v]split=4[s0][s1][s2][s3];[s0]fps=60,scale_cuda=1920:1080[v0];[s1]fps=30,scale_cuda=1280:720[v1];" +
                     "[s2]fps=30,scale_cuda=854:480[v2];[s3]fps=30,scale_cuda=640:360[v3]", graph);
        Assert.Contains("-c:v:0 h264_nvenc -b:v:0", joined);
        Assert.Contains("-preset p4 -rc cbr -no-scenecut 1 -forced-idr 1", joined);
        Assert.DoesNotContain("-pix_fmt", joined); // CUDA frames go to the encoder as they are
        Assert.DoesNotContain("libx264", joined);
    }

    [Fact]
    public void Nvenc_without_scale_cuda_scales_in_memory()
    {
        var encoder = LadderEncoder.Choose("auto", Report(("h264_nvenc", true)), new HashSet<string> { "scale", "split" });
        Assert.Equal(GpuFrames.None, encoder.Frames);
        var args = string.Join(' ', HlsCommand.Build("rtmp://x/live/a", "/out", Ladder, encoder: encoder));
        Assert.DoesNotContain("-hwaccel", args);
        Assert.Contains("scale=1280:720,format=nv12[v1]", args);
    }

    [Fact]
    public void Vaapi_decodes_and_scales_on_the_render_node()
    {
        var encoder = LadderEncoder.Choose("auto", Report(("h264_nvenc", false), ("h264_qsv", false), ("h264_vaapi", true), ("libx264", true)), DebianFilters);
        Assert.Equal(new LadderEncoder("h264_vaapi", GpuFrames.Vaapi), encoder);
        var args = string.Join(' ', HlsCommand.Build("rtmp://x/live/a", "/out", Ladder, encoder: encoder));
        Assert.Contains("-vaapi_device /dev/dri/renderD128 -hwaccel vaapi -hwaccel_output_format vaapi -extra_hw_frames 16 -rw_timeout", args);
        Assert.Contains("[s1]fps=30,scale_vaapi=w=1280:h=720[v1]", args);
        Assert.Contains("-c:v:1 h264_vaapi", args);
        Assert.Contains("-rc_mode CBR", args);
    }

    [Fact]
    public void Quick_sync_takes_nv12_from_memory()
    {
        var encoder = LadderEncoder.Choose("h264_qsv", Report(("h264_qsv", true), ("libx264", true)), DebianFilters);
        var args = string.Join(' ', HlsCommand.Build("rtmp://x/live/a", "/out", Ladder, encoder: encoder));
        Assert.Contains("scale=854:480,format=nv12[v2]", args);
        Assert.Contains("-c:v:2 h264_qsv", args);
        Assert.Contains("-look_ahead 0", args);
    }

    [Fact]
    public void An_encoder_that_does_not_work_here_falls_back_to_libx264()
    {
        // Restream:Transcode:Encoder=h264_nvenc on a host without an NVIDIA driver.
        var encoder = LadderEncoder.Choose("h264_nvenc", Report(("h264_nvenc", false), ("libx264", true)), DebianFilters);
        Assert.Equal(LadderEncoder.Cpu, encoder);
        Assert.Equal(LadderEncoder.Cpu, LadderEncoder.Choose("auto", Report(("h264_nvenc", false), ("libx264", true)), DebianFilters));
    }

    [Fact]
    public void The_cpu_ladder_is_unchanged()
    {
        var args = string.Join(' ', HlsCommand.Build("rtmp://x/live/a", "/out", Ladder));
        Assert.Contains("scale=1280:720[v1]", args);
        Assert.Contains("-preset veryfast -sc_threshold 0 -pix_fmt yuv420p", args);
        Assert.DoesNotContain("-hwaccel", args);
    }
}
