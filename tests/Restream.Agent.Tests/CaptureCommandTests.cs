namespace Restream.Agent.Tests;

/// <summary>
/// The ffmpeg argument lists for every capture path and every encoder. The Windows paths (ddagrab,
/// gfxcapture, gdigrab, dshow) and the GPU encoders cannot run here; these tests pin what the agent
/// would run there, and the Linux paths are also run for real by the integration tests.
/// </summary>
public sealed class CaptureCommandTests
{
    private static CapturePlan Plan(VideoInput video, AudioInput? system = null, AudioInput? mic = null, string encoder = "libx264",
        IReadOnlyList<OverlaySettings>? overlays = null, (int, int)? size = null) =>
        new(video, system, mic, 1.0, encoder, new EncoderSettings { VideoKbps = 6000, AudioKbps = 160 }, size ?? (1280, 720), 30, true,
            overlays ?? [], "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf");

    private static string Joined(IReadOnlyList<string> args) => string.Join(' ', args);

    private static string Graph(IReadOnlyList<string> args) => args[IndexOf(args, "-filter_complex") + 1];

    private static int IndexOf(IReadOnlyList<string> args, string value)
    {
        for (var i = 0; i < args.Count; i++)
        {
            if (args[i] == value)
            {
                return i;
            }
        }

        return -1;
    }

    [Fact]
    public void X11_window_is_captured_by_id_with_system_sound_from_pulse()
    {
        var args = CaptureCommand.Build(Plan(new X11Window(":0", 0x2a00007, 300, 300), new PulseSource("alsa_output.pci.analog-stereo.monitor")));
        Assert.Contains("-thread_queue_size 512 -f x11grab -framerate 30 -draw_mouse 1 -window_id 0x2a00007 -i :0", Joined(args));
        Assert.Contains("-f pulse -fragment_size 3840 -i alsa_output.pci.analog-stereo.monitor", Joined(args));
        Assert.Equal("[0:v]scale=1280:720:force_original_aspect_ratio=decrease,pad=1280:720:(ow-iw)/2:(oh-ih)/2,fps=30,setsar=1[base];" +
                     "[base]format=yuv420p[vout];[1:a]aresample=48000:async=1[aout]", Graph(args));
        Assert.EndsWith("-max_interleave_delta 100000 -flush_packets 1 -flvflags no_duration_filesize -f flv pipe:1", Joined(args));
    }

    [Fact]
    public void X11_and_pulse_keep_their_wall_clock_stamps_from_one_common_base()
    {
        var plan = Plan(new X11Window(":0", 0x2a00007, 300, 300), new PulseSource("sink.monitor"), new PulseSource("mic")) with { WallclockBase = 1795000000 };
        var args = Joined(CaptureCommand.Build(plan));
        Assert.StartsWith("-hide_banner -nostdin -loglevel warning -stats_period 1 -progress pipe:2 -nostats -copyts -itsoffset -1795000000.000 -thread_queue_size 512 -f x11grab", args);
        Assert.Contains("-itsoffset -1795000000.000 -thread_queue_size 1024 -f pulse -fragment_size 3840 -i sink.monitor " +
                        "-itsoffset -1795000000.000 -thread_queue_size 1024 -f pulse -fragment_size 3840 -i mic", args);

        // DirectShow and Desktop Duplication do not stamp with the wall clock: each input starts at zero there.
        var windows = Joined(CaptureCommand.Build(Plan(new DdaDisplay(0), new DshowAudio("Stereo Mix")) with { WallclockBase = 1795000000 }));
        Assert.DoesNotContain("-copyts", windows);
        Assert.DoesNotContain("-itsoffset", windows);
    }

    [Fact]
    public void X11_region_is_a_rectangle_of_the_display()
    {
        var args = CaptureCommand.Build(Plan(new X11Area(":1", 1920, 0, 2560, 1440)));
        Assert.Contains("-f x11grab -framerate 30 -draw_mouse 1 -video_size 2560x1440 -i :1+1920,0", Joined(args));
    }

    [Fact]
    public void No_sound_source_still_gives_an_audio_track_of_silence()
    {
        var args = CaptureCommand.Build(Plan(new X11Area(":0", 0, 0, 1280, 720)));
        Assert.Contains("-f lavfi -i anullsrc=channel_layout=stereo:sample_rate=48000", Joined(args));
        Assert.Contains("-map [aout]", Joined(args));
    }

    [Fact]
    public void Windows_display_uses_desktop_duplication_and_downloads_the_gpu_frames()
    {
        var args = CaptureCommand.Build(Plan(new DdaDisplay(1), new DshowAudio("Stereo Mix (Realtek(R) Audio)")));
        Assert.Contains("-f lavfi -i ddagrab=output_idx=1:framerate=30:draw_mouse=1", Joined(args));
        Assert.Contains("-f dshow -i audio=Stereo Mix (Realtek(R) Audio)", Joined(args));
        Assert.StartsWith("[0:v]hwdownload,format=bgra,scale=1280:720", Graph(args));
    }

    [Fact]
    public void Windows_region_of_a_display()
    {
        var args = CaptureCommand.Build(Plan(new DdaDisplay(0, (100, 50, 1280, 720))));
        Assert.Contains("ddagrab=output_idx=0:framerate=30:draw_mouse=1:video_size=1280x720:offset_x=100:offset_y=50", Joined(args));
    }

    [Fact]
    public void Windows_window_uses_graphics_capture_by_handle()
    {
        var args = CaptureCommand.Build(Plan(new GfxWindow(0x1A0B2C)));
        Assert.Contains("-f lavfi -i gfxcapture=hwnd=0x1a0b2c:max_framerate=30:capture_cursor=1", Joined(args));
        Assert.StartsWith("[0:v]hwdownload,format=bgra,", Graph(args));
    }

    [Fact]
    public void Windows_window_on_older_ffmpeg_uses_gdigrab_by_title()
    {
        var args = CaptureCommand.Build(Plan(new GdiCapture("Minecraft 1.21")));
        var i = IndexOf(args, "gdigrab");
        Assert.Equal(["-f", "gdigrab", "-framerate", "30", "-draw_mouse", "1", "-i", "title=Minecraft 1.21"], args.Skip(i - 1).Take(8));
        Assert.DoesNotContain("hwdownload", Graph(args));
    }

    [Fact]
    public void Windows_desktop_region_through_gdigrab()
    {
        var args = CaptureCommand.Build(Plan(new GdiCapture(null, (10, 20, 800, 600))));
        Assert.Contains("-f gdigrab -framerate 30 -draw_mouse 1 -offset_x 10 -offset_y 20 -video_size 800x600 -i desktop", Joined(args));
    }

    [Fact]
    public void System_sound_and_microphone_are_mixed_without_halving_levels()
    {
        var plan = Plan(new X11Area(":0", 0, 0, 1280, 720), new PulseSource("sink.monitor"), new PulseSource("mic")) with { MicrophoneVolume = 1.5 };
        var args = CaptureCommand.Build(plan);
        Assert.Contains("[1:a]aresample=48000:async=1[sys];[2:a]aresample=48000:async=1,volume=1.5[mic];" +
                        "[sys][mic]amix=inputs=2:duration=longest:dropout_transition=0:normalize=0[aout]", Graph(args));
    }

    [Fact]
    public void Dshow_microphone_on_windows()
    {
        var args = CaptureCommand.Build(Plan(new DdaDisplay(0), new DshowAudio("Stereo Mix"), new DshowAudio("Microphone (Blue Yeti)")));
        Assert.Contains("-f dshow -i audio=Stereo Mix -thread_queue_size 1024 -f dshow -i audio=Microphone (Blue Yeti)", Joined(args));
    }

    [Theory]
    [InlineData("libx264", "-c:v libx264 -preset veryfast -tune zerolatency -profile:v high -x264-params nal-hrd=cbr:force-cfr=1 -sc_threshold 0 -b:v 6000k -maxrate 6000k -bufsize 12000k -g 60 -keyint_min 60 -bf 0 -pix_fmt yuv420p")]
    [InlineData("h264_nvenc", "-c:v h264_nvenc -preset p4 -tune ll -rc cbr -profile:v high -no-scenecut 1 -b:v 6000k -maxrate 6000k -bufsize 12000k -g 60 -keyint_min 60 -bf 0 -pix_fmt yuv420p")]
    [InlineData("h264_qsv", "-c:v h264_qsv -preset veryfast -look_ahead 0 -profile:v high -b:v 6000k -maxrate 6000k -bufsize 12000k -g 60 -keyint_min 60 -bf 0 -pix_fmt yuv420p")]
    [InlineData("h264_amf", "-c:v h264_amf -usage lowlatency -quality speed -rc cbr -profile:v high -b:v 6000k -maxrate 6000k -bufsize 12000k -g 60 -keyint_min 60 -bf 0 -pix_fmt yuv420p")]
    [InlineData("h264_vaapi", "-c:v h264_vaapi -rc_mode CBR -profile:v high -b:v 6000k -maxrate 6000k -bufsize 12000k -g 60 -keyint_min 60 -bf 0")]
    public void Every_encoder_gets_cbr_a_two_second_gop_and_no_b_frames(string encoder, string expected)
    {
        var args = Encoders.VideoArguments(encoder, new EncoderSettings { VideoKbps = 6000 }, 30, cores: 4);
        Assert.Equal(expected, Joined(args));
    }

    [Fact]
    public void Vaapi_opens_the_render_node_and_uploads_frames()
    {
        var args = CaptureCommand.Build(Plan(new X11Area(":0", 0, 0, 1920, 1080), encoder: "h264_vaapi"));
        Assert.Equal(["-vaapi_device", "/dev/dri/renderD128"], args.Skip(IndexOf(args, "-vaapi_device")).Take(2));
        Assert.Contains("format=nv12,hwupload[vout]", Graph(args));
    }

    [Theory]
    [InlineData(2, "superfast")]
    [InlineData(4, "veryfast")]
    [InlineData(8, "faster")]
    [InlineData(16, "fast")]
    public void Auto_x264_preset_follows_the_cpu(int cores, string preset)
    {
        var args = Encoders.VideoArguments("libx264", new EncoderSettings(), 30, cores);
        Assert.Equal(preset, args[args.ToList().IndexOf("-preset") + 1]);
        Assert.Equal("medium", Encoders.VideoArguments("libx264", new EncoderSettings { X264Preset = "medium" }, 30, cores)[3]);
    }

    [Fact]
    public void Gop_follows_the_frame_rate()
    {
        var args = Encoders.VideoArguments("libx264", new EncoderSettings { KeyframeSeconds = 2 }, 60);
        Assert.Equal("120", args[IndexOf(args, "-g") + 1]);
    }

    [Fact]
    public void Auto_prefers_a_working_hardware_encoder_then_libx264()
    {
        Assert.Equal("h264_nvenc", Encoders.Choose("auto", [new("h264_nvenc", true, true, null), new("libx264", true, true, null)]));
        Assert.Equal("h264_vaapi", Encoders.Choose("auto", [new("h264_nvenc", true, false, "no GPU"), new("h264_vaapi", true, true, null), new("libx264", true, true, null)]));
        Assert.Equal("libx264", Encoders.Choose("auto", [new("h264_nvenc", false, false, "not built"), new("libx264", true, true, null)]));
        Assert.Equal("h264_qsv", Encoders.Choose("h264_qsv", []));
    }

    [Fact]
    public void Text_image_and_live_text_file_overlays_chain_in_order()
    {
        OverlaySettings[] overlays =
        [
            new() { Type = "text", Text = "Hello: world", Position = "bottom-right", FontSize = 40, Color = "yellow" },
            new() { Type = "image", Image = "/tmp/logo.png", Position = "top-right", Scale = 0.5, Opacity = 0.8 },
            new() { Type = "text", TextFile = "/tmp/now playing.txt", Position = "20,30", Box = false },
        ];
        var args = CaptureCommand.Build(Plan(new X11Area(":0", 0, 0, 1280, 720), overlays: overlays));
        Assert.Contains("-loop 1 -framerate 30 -i /tmp/logo.png", Joined(args));
        var graph = Graph(args);
        Assert.Contains("[base]drawtext=fontfile=/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf:text=Hello\\\\: world:expansion=none:fontsize=40:fontcolor=yellow:x=w-tw-16:y=h-th-16:box=1:boxborderw=8:boxcolor=black@0.5[ov0];", graph);
        // Image input 2 (after the silence input 1): scaled, made translucent, overlaid top right.
        Assert.Contains("[2:v]format=rgba,scale=iw*0.5:ih*0.5,colorchannelmixer=aa=0.8[img2];[ov0][img2]overlay=x=main_w-overlay_w-16:y=16:eof_action=repeat:shortest=0[ov1];", graph);
        Assert.Contains("[ov1]drawtext=fontfile=/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf:textfile=/tmp/now playing.txt:reload=1:expansion=none:fontsize=32:fontcolor=white:x=20:y=30[ov2];", graph);
        Assert.Contains("[ov2]format=yuv420p[vout]", graph);
    }

    [Theory]
    [InlineData(@"C:\Windows\Fonts\arial.ttf", @"C\\:\\\\Windows\\\\Fonts\\\\arial.ttf")]
    [InlineData("it's [live], now; go", @"it\\\'s \[live\]\, now\; go")]
    [InlineData("plain", "plain")]
    public void Filter_values_are_escaped_for_the_option_and_the_graph(string value, string escaped)
    {
        Assert.Equal(escaped, CaptureCommand.Escape(value));
    }

    [Fact]
    public void Test_pattern_and_tone_need_no_devices()
    {
        var args = CaptureCommand.Build(Plan(new TestPattern(640, 360), new ToneSource(440)));
        Assert.Contains("-re -f lavfi -i testsrc2=size=640x360:rate=30", Joined(args));
        Assert.Contains("-re -f lavfi -i sine=frequency=440:sample_rate=48000", Joined(args));
    }

    [Fact]
    public void Without_an_output_size_the_capture_is_rounded_to_even()
    {
        var args = CaptureCommand.Build(Plan(new X11Window(":0", 1, 301, 301)) with { OutputSize = null });
        Assert.StartsWith("[0:v]scale=trunc(iw/2)*2:trunc(ih/2)*2,fps=30", Graph(args));
    }
}
