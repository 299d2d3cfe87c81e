using Restream.Agent.Sources;

namespace Restream.Agent.Tests;

public sealed class ProfileTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("agent-profile").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string Write(string text)
    {
        var path = Path.Combine(_dir, $"{Guid.NewGuid():N}.json");
        File.WriteAllText(path, text);
        return path;
    }

    [Fact]
    public void The_commented_profile_from_init_loads_as_written()
    {
        var profile = AgentProfile.Load(Write(ProfileTemplate.Render("rtmps://live.example.com:1936/live", "window", "Minecraft")));
        Assert.Equal("rtmps://live.example.com:1936/live", profile.Server);
        Assert.Equal(("window", "Minecraft", "1280x720", 30), (profile.Video.Source, profile.Video.Window, profile.Video.Size, profile.Video.Fps));
        Assert.Equal(("auto", 6000, 0), (profile.Encoder.Name, profile.Encoder.VideoKbps, profile.Encoder.BFrames));
        Assert.Equal("default", profile.Audio.System);
        Assert.Equal("RESTREAM_STREAM_KEY", profile.KeyEnv);
        Assert.Empty(profile.Overlays);
    }

    [Theory]
    [InlineData("""{ "server": "http://example.com/live" }""", "server:")]
    [InlineData("""{ "server": "rtmp://example.com" }""", "has no application")]
    [InlineData("""{ "video": { "source": "camera" } }""", "video.source")]
    [InlineData("""{ "video": { "source": "window" } }""", "video.window")]
    [InlineData("""{ "video": { "source": "region", "region": "10,10" } }""", "video.region")]
    [InlineData("""{ "video": { "size": "huge" } }""", "video.size")]
    [InlineData("""{ "video": { "fps": 0 } }""", "video.fps")]
    [InlineData("""{ "encoder": { "name": "h265_magic" } }""", "encoder.name")]
    [InlineData("""{ "encoder": { "videoKbps": 5 } }""", "encoder.videoKbps")]
    [InlineData("""{ "overlays": [ { "type": "text" } ] }""", "overlays[0]")]
    [InlineData("""{ "overlays": [ { "type": "image", "image": "/nope/logo.png" } ] }""", "overlays[0].image")]
    [InlineData("""{ "overlays": [ { "type": "text", "text": "hi", "position": "middle" } ] }""", "overlays[0].position")]
    [InlineData("""{ "streamKey": "live_123" }""", "streamKey")]
    [InlineData("""{ "server": """, "profile")]
    public void A_bad_profile_names_the_key_that_is_wrong(string json, string named)
    {
        var e = Assert.Throws<ProfileException>(() => AgentProfile.Load(Write(json)));
        Assert.Contains(named, e.Message);
    }

    [Fact]
    public void A_missing_profile_says_how_to_make_one()
    {
        var e = Assert.Throws<ProfileException>(() => AgentProfile.Load(Path.Combine(_dir, "none.json")));
        Assert.Contains("restream-agent init", e.Message);
    }

    [Fact]
    public void The_key_comes_from_the_environment_first_then_the_store_and_is_kept_private()
    {
        var store = Path.Combine(_dir, "keys", "stream-key");
        var profile = new AgentProfile { KeyEnv = "RESTREAM_TEST_KEY_" + Guid.NewGuid().ToString("N") };
        Assert.Contains(profile.KeyEnv, Assert.Throws<ProfileException>(() => StreamKeyStore.Resolve(profile, store)).Message);

        StreamKeyStore.Save("  live_stored_123456  \n", store);
        Assert.Equal("live_stored_123456", StreamKeyStore.Resolve(profile, store));
        if (!OperatingSystem.IsWindows())
        {
            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(store));
        }

        Environment.SetEnvironmentVariable(profile.KeyEnv, "live_env_987654");
        try
        {
            Assert.Equal("live_env_987654", StreamKeyStore.Resolve(profile, store));
        }
        finally
        {
            Environment.SetEnvironmentVariable(profile.KeyEnv, null);
        }

        Assert.Equal("live************", StreamKeyStore.Mask("live_stored_123456"));
    }
}

public sealed class SourceParsingTests
{
    [Fact]
    public void A_wayland_session_is_named_with_what_works_and_what_to_do()
    {
        var saved = (Environment.GetEnvironmentVariable("WAYLAND_DISPLAY"), Environment.GetEnvironmentVariable("XDG_SESSION_TYPE"));
        try
        {
            Environment.SetEnvironmentVariable("WAYLAND_DISPLAY", null);
            Environment.SetEnvironmentVariable("XDG_SESSION_TYPE", "x11");
            Assert.Null(SourceCatalog.WaylandNote());

            Environment.SetEnvironmentVariable("WAYLAND_DISPLAY", "wayland-0");
            var note = SourceCatalog.WaylandNote();
            Assert.NotNull(note);
            Assert.Contains("XWayland", note);
            Assert.Contains("PipeWire", note);
            Assert.Contains("X11 session", note);
        }
        finally
        {
            Environment.SetEnvironmentVariable("WAYLAND_DISPLAY", saved.Item1);
            Environment.SetEnvironmentVariable("XDG_SESSION_TYPE", saved.Item2);
        }
    }

    [Fact]
    public void Pulse_sources_mark_the_default_sinks_monitor_as_system_sound()
    {
        // pactl list short sources, PipeWire 0.3 (pipewire-pulse) on Ubuntu 24.04
        const string listing = """
            55	alsa_output.pci-0000_00_1f.3.analog-stereo.monitor	PipeWire	s32le 2ch 48000Hz	SUSPENDED
            56	alsa_input.pci-0000_00_1f.3.analog-stereo	PipeWire	s32le 2ch 48000Hz	SUSPENDED
            81	bluez_output.00_1B_66_AA_BB_CC.1.monitor	PipeWire	s24le 2ch 48000Hz	RUNNING
            """;
        var devices = SourceCatalog.ParsePulseSources(listing, "bluez_output.00_1B_66_AA_BB_CC.1", "alsa_input.pci-0000_00_1f.3.analog-stereo");
        Assert.Equal(3, devices.Count);
        Assert.Equal("bluez_output.00_1B_66_AA_BB_CC.1.monitor", SourceCatalog.DefaultSystemSource(devices));
        var mic = Assert.Single(devices, d => !d.SystemOutput);
        Assert.True(mic.Default);
        Assert.Equal("alsa_input.pci-0000_00_1f.3.analog-stereo", mic.Name);
    }

    [Fact]
    public void No_monitor_source_is_explained()
    {
        var devices = SourceCatalog.ParsePulseSources("3\talsa_input.usb-mic\tmodule-alsa-card.c\ts16le 1ch 44100Hz\tIDLE", "", "alsa_input.usb-mic");
        Assert.Contains("PulseAudio/PipeWire", Assert.Throws<SourceException>(() => SourceCatalog.DefaultSystemSource(devices)).Message);
    }

    [Fact]
    public void Dshow_listing_in_the_newer_layout()
    {
        // ffmpeg 6.1 (gyan.dev build) on Windows 11: ffmpeg -hide_banner -list_devices true -f dshow -i dummy
        const string output = """
            [in#0 @ 000001e5c9b7e0c0] "OBS Virtual Camera" (video)
            [in#0 @ 000001e5c9b7e0c0]   Alternative name "@device_sw_{860BB310-5D01-11D0-BD3B-00A0C911CE86}\{A3FCE0F5-3493-419F-958A-ABA1250EC20B}"
            [in#0 @ 000001e5c9b7e0c0] "Microphone (Realtek(R) Audio)" (audio)
            [in#0 @ 000001e5c9b7e0c0]   Alternative name "@device_cm_{33D9A762-90C8-11D0-BD43-00A0C911CE86}\wave_{1B2C3D}"
            [in#0 @ 000001e5c9b7e0c0] "Stereo Mix (Realtek(R) Audio)" (audio)
            [in#0 @ 000001e5c9b7e0c0]   Alternative name "@device_cm_{33D9A762-90C8-11D0-BD43-00A0C911CE86}\wave_{4E5F6A}"
            [in#0 @ 000001e5c9b7e0c0] Error opening input: Immediate exit requested
            dummy: Immediate exit requested
            """;
        var devices = SourceCatalog.ParseDshowAudio(output);
        Assert.Equal(["Microphone (Realtek(R) Audio)", "Stereo Mix (Realtek(R) Audio)"], devices.Select(d => d.Name));
        Assert.Equal([false, true], devices.Select(d => d.SystemOutput));
    }

    [Fact]
    public void Dshow_listing_in_the_older_layout()
    {
        // ffmpeg 4.3 on Windows 10
        const string output = """
            [dshow @ 0000020e6b0b9b40] DirectShow video devices (some may be both video and audio devices)
            [dshow @ 0000020e6b0b9b40]  "Integrated Webcam"
            [dshow @ 0000020e6b0b9b40]     Alternative name "@device_pnp_\\?\usb#vid_0bda"
            [dshow @ 0000020e6b0b9b40] DirectShow audio devices
            [dshow @ 0000020e6b0b9b40]  "virtual-audio-capturer"
            [dshow @ 0000020e6b0b9b40]     Alternative name "@device_sw_{33D9A762}"
            [dshow @ 0000020e6b0b9b40]  "Headset Microphone (Arctis 7 Chat)"
            dummy: Immediate exit requested
            """;
        var devices = SourceCatalog.ParseDshowAudio(output);
        Assert.Equal(["virtual-audio-capturer", "Headset Microphone (Arctis 7 Chat)"], devices.Select(d => d.Name));
        Assert.True(devices[0].SystemOutput);
    }

    private static readonly WindowInfo[] Windows =
    [
        new(0x2a00007, "Minecraft 1.21.1", "java", 0, 0, 1920, 1080),
        new(0x3c00004, "Counter-Strike 2", "cs2", 0, 0, 2560, 1440),
        new(0x4200003, "Notes - Minecraft ideas", "gedit", 10, 10, 800, 600),
        new(0x4400001, "Terminal", "gnome-terminal-server", 0, 0, 800, 600),
    ];

    [Fact]
    public void A_window_is_found_by_unique_title_part_exact_title_program_or_id()
    {
        Assert.Equal(0x3c00004UL, SourceCatalog.FindWindow(Windows, "counter-strike").Id);
        Assert.Equal(0x2a00007UL, SourceCatalog.FindWindow(Windows, "Minecraft 1.21.1").Id);
        Assert.Equal(0x2a00007UL, SourceCatalog.FindWindow(Windows, "java").Id);
        Assert.Equal(0x4400001UL, SourceCatalog.FindWindow(Windows, "0x4400001").Id);
    }

    [Fact]
    public void An_ambiguous_or_missing_window_is_explained()
    {
        var ambiguous = Assert.Throws<SourceException>(() => SourceCatalog.FindWindow(Windows, "minecraft"));
        Assert.Contains("matches 2 windows", ambiguous.Message);
        Assert.Contains("0x4200003", ambiguous.Message);
        Assert.Contains("restream-agent sources", Assert.Throws<SourceException>(() => SourceCatalog.FindWindow(Windows, "Valorant")).Message);
    }

    [Theory]
    [InlineData("ffmpeg version 5.1.6-0+deb12u1 Copyright (c) 2000-2024 the FFmpeg developers", 5)]
    [InlineData("ffmpeg version n8.0 Copyright (c) 2000-2025 the FFmpeg developers", 8)]
    [InlineData("ffmpeg version 8.0-full_build-www.gyan.dev Copyright (c) 2000-2025", 8)]
    [InlineData("ffmpeg version 2025-06-02-git-688f3944ce-full_build-www.gyan.dev", 99)]
    [InlineData("bash: ffmpeg: command not found", 0)]
    public void Ffmpeg_major_version_is_read_from_its_banner(string banner, int major)
    {
        Assert.Equal(major, CapturePlanner.ParseFfmpegMajor(banner));
    }

    [Fact]
    public void Doctor_reads_recorded_device_and_filter_listings()
    {
        // Trimmed from `ffmpeg -devices` / `ffmpeg -filters` of Debian 12's ffmpeg 5.1.
        const string devices = """
            Devices:
             D. = Demuxing supported
             .E = Muxing supported
             --
             DE alsa            ALSA audio output
             D  lavfi           Libavfilter virtual input device
             DE pulse           Pulse audio output
             D  x11grab         X11 screen capture, using XCB
            """;
        const string filters = """
             ... drawtext          V->V       Draw text on top of video frames using libfreetype library.
             TSC overlay           VV->V      Overlay a video source on top of the input.
            """;
        var linux = Doctor.FeatureChecks(devices, filters, 5, windows: false).ToList();
        Assert.All(linux, c => Assert.Equal(DoctorResult.Ok, c.Result));

        var windows = Doctor.FeatureChecks(devices, filters, 5, windows: true).ToList();
        Assert.Equal(DoctorResult.Failed, windows.Single(c => c.Name.Contains("ddagrab", StringComparison.Ordinal)).Result);
        Assert.Equal(DoctorResult.Warning, windows.Single(c => c.Name == "window capture").Result);
        Assert.Contains("ffmpeg 8", windows.Single(c => c.Name == "window capture").Fix);
        Assert.NotNull(windows.Single(c => c.Name.Contains("dshow", StringComparison.Ordinal)).Fix);

        const string noText = " TSC overlay           VV->V      Overlay a video source on top of the input.";
        var missing = Doctor.FeatureChecks(devices, noText, 5, windows: false).Single(c => c.Name.Contains("drawtext", StringComparison.Ordinal));
        Assert.Equal(DoctorResult.Failed, missing.Result);
        Assert.Contains("libfreetype", missing.Fix);
    }
}
