using Microsoft.Extensions.DependencyInjection;
using System.Globalization;
using System.Text.Json;
using System.Text.RegularExpressions;
using Restream.IntegrationTests.Infrastructure;
using Restream.Relay;

namespace Restream.IntegrationTests;

/// <summary>A headless desktop (Xvfb + xclock + PulseAudio playing a tone) and nginx-rtmp as the platform our server relays to.</summary>
public sealed class AgentFixture : IAsyncLifetime
{
    public X11Desktop Desktop { get; } = new();
    public NginxRtmp Nginx { get; } = new(["twitch"]);

    public async Task InitializeAsync()
    {
        await Desktop.StartAsync();
        await Nginx.StartAsync();
    }

    public async Task DisposeAsync()
    {
        await Nginx.DisposeAsync();
        await Desktop.DisposeAsync();
    }
}

/// <summary>
/// The streamer's agent, run as the real program against the real server: it captures an X11
/// window and the sound server's "what you hear", encodes, draws overlays, and pushes with our RTMP client.
/// </summary>
[Collection("cpu-heavy")]
public sealed partial class AgentTests(AgentFixture fixture) : IClassFixture<AgentFixture>
{
    private const string Key = "live_agent_0123456789";

    private Dictionary<string, string> Environment => new(fixture.Desktop.Environment) { ["RESTREAM_STREAM_KEY"] = Key };

    private static Dictionary<string, string?> Channel(params (string Key, string? Value)[] extra)
    {
        var settings = new Dictionary<string, string?>
        {
            ["Restream:Channels:0:Name"] = "agent",
            ["Restream:Channels:0:StreamKey"] = Key,
        };
        foreach (var (k, v) in extra)
        {
            settings[k] = v;
        }

        return settings;
    }

    [Fact]
    public async Task Sources_lists_the_window_and_the_system_sound()
    {
        var (code, output) = await AgentProcess.RunAsync(["sources", "--json"], Environment, TimeSpan.FromSeconds(30));
        Assert.True(code == 0, output);
        using var doc = JsonDocument.Parse(output[output.IndexOf('{')..]);
        var window = Assert.Single(doc.RootElement.GetProperty("windows").EnumerateArray(), w => w.GetProperty("title").GetString() == X11Desktop.WindowTitle);
        Assert.Equal((300, 300), (window.GetProperty("width").GetInt32(), window.GetProperty("height").GetInt32()));
        Assert.Equal("xclock", window.GetProperty("process").GetString());
        var screen = Assert.Single(doc.RootElement.GetProperty("displays").EnumerateArray());
        Assert.Equal(1280, screen.GetProperty("width").GetInt32());
        Assert.Contains(doc.RootElement.GetProperty("audio").EnumerateArray(),
            a => a.GetProperty("name").GetString() == X11Desktop.SinkName + ".monitor" && a.GetProperty("systemOutput").GetBoolean() && a.GetProperty("default").GetBoolean());
    }

    [Fact]
    public async Task Window_and_system_sound_are_pushed_and_relayed_at_the_requested_size_and_rate()
    {
        const string streamName = "agent-window";
        await using var server = await RestreamServer.StartAsync(Channel(
            ("Restream:Channels:0:Destinations:0:Name", "twitch"),
            ("Restream:Channels:0:Destinations:0:Url", fixture.Nginx.Url("twitch")),
            ("Restream:Channels:0:Destinations:0:Key", streamName)));
        await using var agent = AgentProcess.Start(
            ["push", "--server", $"rtmp://127.0.0.1:{server.RtmpPort}/live", "--window", X11Desktop.WindowTitle,
             "--size", "640x360", "--fps", "30", "--video-kbps", "1500", "--json"], Environment);

        Assert.True(await TestPorts.EventuallyAsync(() => agent.State == "live", TimeSpan.FromSeconds(30)), agent.Output);
        Assert.True(await TestPorts.EventuallyAsync(
            () => server.Relay.GetDestinations("agent") is [{ State: DestinationState.Live }], TimeSpan.FromSeconds(10)), agent.Output);
        await Task.Delay(TimeSpan.FromSeconds(10));
        agent.Interrupt();
        Assert.Equal(0, await agent.WaitAsync(TimeSpan.FromSeconds(20)));
        Assert.Contains("\"event\":\"stopped\"", agent.Output);
        Assert.DoesNotContain(Key, agent.Output);

        var recording = fixture.Nginx.RecordingOf("twitch", streamName);
        Assert.True(await TestPorts.EventuallyAsync(() => server.Streams.LiveStreams.Count == 0, TimeSpan.FromSeconds(10)));
        await Task.Delay(1000); // nginx closes the recording after the unpublish
        var (video, audio, duration) = await ProbeAsync(recording);
        Assert.Equal("h264", video.GetProperty("codec_name").GetString());
        Assert.Equal((640, 360), (video.GetProperty("width").GetInt32(), video.GetProperty("height").GetInt32()));
        var frames = long.Parse(video.GetProperty("nb_read_frames").GetString()!, CultureInfo.InvariantCulture);
        var fps = frames / duration;
        Assert.InRange(duration, 8, 16);
        Assert.InRange(fps, 27, 33);
        Assert.Equal("aac", audio.GetProperty("codec_name").GetString());

        // The tone played on the desktop is in the stream: far above digital silence (-91 dB).
        var (_, volume) = await ExternalProcess.RunAsync("ffmpeg", ["-hide_banner", "-nostdin", "-i", recording, "-vn", "-af", "volumedetect", "-f", "null", "-"], TimeSpan.FromSeconds(60));
        var mean = double.Parse(MeanVolume().Match(volume).Groups[1].Value, CultureInfo.InvariantCulture);
        Assert.True(mean > -40, volume);
    }

    [Fact]
    public async Task Overlays_draw_the_image_and_the_text_box_where_they_are_placed()
    {
        // A black part of the desktop: without overlays the picture is black everywhere.
        var png = Path.Combine(fixture.Desktop.Directory, "logo.png");
        var (made, output) = await ExternalProcess.RunAsync("ffmpeg",
            ["-hide_banner", "-y", "-f", "lavfi", "-i", "color=c=0xE02020:s=64x64", "-frames:v", "1", png], TimeSpan.FromSeconds(30));
        Assert.True(made == 0, output);
        string[] capture = ["--region", "800,400,320x240", "--size", "320x240", "--fps", "30", "--video-kbps", "2000", "--audio", "none"];

        var plain = await GrabFrameAsync(capture);
        var drawn = await GrabFrameAsync([.. capture, "--overlay", $"image:{png}@240,16", "--overlay", "text:RESTREAM@bottom-left"]);

        // The image: where it is drawn the picture is the PNG's colour (within coding error); before it was black.
        var (r, g, b) = Mean(drawn, 250, 26, 44, 44);
        Assert.InRange(r, 0xE0 - 30, 255);
        Assert.InRange(g, 0, 0x20 + 30);
        Assert.InRange(b, 0, 0x20 + 30);
        Assert.True(Mean(plain, 250, 26, 44, 44).R < 20, "the capture without overlays is not black there");
        // The text on its box, bottom left: bright pixels now, none before.
        var textArea = Mean(drawn, 16, 180, 140, 44);
        var before = Mean(plain, 16, 180, 140, 44);
        Assert.True(textArea.R - before.R > 20, $"text area {textArea} vs {before}");
        // The rest of the frame is untouched.
        Assert.True(Math.Abs(Mean(drawn, 120, 60, 80, 80).R - Mean(plain, 120, 60, 80, 80).R) < 10);
    }

    [Fact]
    public async Task Agent_reconnects_by_itself_when_the_ingest_comes_back()
    {
        var port = TestPorts.GetFreeTcpPort();
        var settings = Channel(("Restream:Rtmp:Port", port.ToString(CultureInfo.InvariantCulture)));
        var server = await RestreamServer.StartAsync(settings);
        await using var agent = AgentProcess.Start(
            ["push", "--server", $"rtmp://127.0.0.1:{port}/live", "--window", X11Desktop.WindowTitle,
             "--size", "320x240", "--video-kbps", "800", "--json"], Environment);
        try
        {
            Assert.True(await TestPorts.EventuallyAsync(() => agent.State == "live", TimeSpan.FromSeconds(30)), agent.Output);
            var ffmpeg = agent.FfmpegChild();
            Assert.NotNull(ffmpeg);

            await server.DisposeAsync();
            Assert.True(await TestPorts.EventuallyAsync(() => agent.State is "reconnecting" or "connecting", TimeSpan.FromSeconds(15)), agent.Output);
            await Task.Delay(TimeSpan.FromSeconds(2));

            server = await RestreamServer.StartAsync(settings);
            Assert.True(await TestPorts.EventuallyAsync(() => server.Streams.Find("agent") is { VideoFramesIn: > 60 }, TimeSpan.FromSeconds(20)), agent.Output);
            // The agent's status line comes once a second.
            Assert.True(await TestPorts.EventuallyAsync(() => agent.State == "live", TimeSpan.FromSeconds(5)), agent.Output);
            Assert.True(agent.Last!.Value.GetProperty("reconnects").GetInt64() >= 1);
            // Capture and encoding never stopped: the same ffmpeg runs on.
            Assert.Equal(0, agent.Last!.Value.GetProperty("captureRestarts").GetInt64());
            Assert.Equal(ffmpeg, agent.FfmpegChild());
            Assert.Contains("reconnecting", agent.Output);
        }
        finally
        {
            agent.Interrupt();
            await agent.WaitAsync(TimeSpan.FromSeconds(20));
            await server.DisposeAsync();
        }
    }

    [Fact]
    public async Task The_agent_pushes_over_rtmps_and_srt_too()
    {
        var certificate = await TestCertificate.CreateAsync();
        var tlsPort = TestPorts.GetFreeTcpPort();
        var srtPort = TestPorts.GetFreeUdpPort();
        await using var server = await RestreamServer.StartAsync(Channel(
            ("Restream:Rtmps:Port", tlsPort.ToString(CultureInfo.InvariantCulture)), ("Restream:Rtmps:Address", "127.0.0.1"),
            ("Restream:Rtmps:CertificateFile", certificate.CertificateFile), ("Restream:Rtmps:KeyFile", certificate.KeyFile),
            ("Restream:Srt:Enabled", "true"), ("Restream:Srt:Port", srtPort.ToString(CultureInfo.InvariantCulture)), ("Restream:Srt:Address", "127.0.0.1")));
        await server.Services.GetRequiredService<Restream.Ingest.Rtmp.RtmpServer>().BoundTlsEndpoint.WaitAsync(TimeSpan.FromSeconds(10));

        foreach (string[] target in (string[][])[["--server", $"rtmps://localhost:{tlsPort}/live", "--trust-cert", certificate.CertificateFile], ["--server", $"srt://127.0.0.1:{srtPort}"]])
        {
            await using var agent = AgentProcess.Start(["push", .. target, "--source", "test", "--audio", "tone", "--size", "320x240", "--video-kbps", "500", "--json"], Environment);
            Assert.True(await TestPorts.EventuallyAsync(() => server.Streams.Find("agent") is { VideoFramesIn: > 60, Media.Width: 320 }, TimeSpan.FromSeconds(30)),
                $"{target[1]}: {agent.Output}\n{server.Log.Text}");
            Assert.Equal("live", agent.State);
            agent.Interrupt();
            Assert.Equal(0, await agent.WaitAsync(TimeSpan.FromSeconds(20)));
            Assert.True(await TestPorts.EventuallyAsync(() => server.Streams.Find("agent") is null, TimeSpan.FromSeconds(15)), $"{target[1]}: the stream did not end");
        }

        // Without trusting the self-signed certificate the agent refuses the server, and says why.
        await using var untrusting = AgentProcess.Start(["push", "--server", $"rtmps://localhost:{tlsPort}/live", "--source", "test", "--audio", "none",
            "--size", "320x240", "--video-kbps", "300", "--json"], Environment);
        Assert.True(await TestPorts.EventuallyAsync(() => untrusting.Last?.GetProperty("lastError").GetString() is { Length: > 0 }, TimeSpan.FromSeconds(30)), untrusting.Output);
        Assert.Null(server.Streams.Find("agent"));
        untrusting.Interrupt();
    }

    [Fact]
    public async Task An_unreachable_ingest_fails_over_to_the_next_and_back()
    {
        var port = TestPorts.GetFreeTcpPort();
        var settings = Channel(("Restream:Rtmp:Port", port.ToString(CultureInfo.InvariantCulture)));
        await using var fallback = await RestreamServer.StartAsync(Channel());
        var dead = $"rtmp://127.0.0.1:{port}/live"; // nothing listens there yet
        await using var agent = AgentProcess.Start(["push", "--server", dead, "--fallback-server", $"rtmp://127.0.0.1:{fallback.RtmpPort}/live",
            "--source", "test", "--audio", "none", "--size", "320x240", "--video-kbps", "300", "--json"], Environment);

        Assert.True(await TestPorts.EventuallyAsync(() => fallback.Streams.Find("agent") is { VideoFramesIn: > 30 }, TimeSpan.FromSeconds(30)), agent.Output);
        Assert.Contains("switching to rtmp://127.0.0.1:" + fallback.RtmpPort, agent.Output);
        Assert.True(await TestPorts.EventuallyAsync(() => agent.Last?.GetProperty("server").GetString() == $"rtmp://127.0.0.1:{fallback.RtmpPort}/live",
            TimeSpan.FromSeconds(5)), agent.Output);

        // The fallback goes away and the first ingest is back: the agent goes round the list to it.
        await using var primary = await RestreamServer.StartAsync(settings);
        await fallback.DisposeAsync();
        Assert.True(await TestPorts.EventuallyAsync(() => primary.Streams.Find("agent") is { VideoFramesIn: > 30 }, TimeSpan.FromSeconds(30)), agent.Output);
        Assert.Equal(0, agent.Last!.Value.GetProperty("captureRestarts").GetInt64());
        agent.Interrupt();
        Assert.Equal(0, await agent.WaitAsync(TimeSpan.FromSeconds(20)));
    }

    [Fact]
    public async Task Killing_the_agent_leaves_no_ffmpeg_behind()
    {
        await using var server = await RestreamServer.StartAsync(Channel());
        await using var agent = AgentProcess.Start(
            ["push", "--server", $"rtmp://127.0.0.1:{server.RtmpPort}/live", "--source", "test", "--audio", "tone",
             "--size", "320x240", "--video-kbps", "500", "--json"], Environment);
        Assert.True(await TestPorts.EventuallyAsync(() => agent.State == "live", TimeSpan.FromSeconds(30)), agent.Output);
        var ffmpeg = agent.FfmpegChild() ?? throw new InvalidOperationException("no ffmpeg under the agent");

        agent.KillHard();
        // ffmpeg's next write to the agent's pipe fails and it exits.
        Assert.True(await TestPorts.EventuallyAsync(() => !ProcessTree.IsRunning(ffmpeg), TimeSpan.FromSeconds(5)), $"ffmpeg {ffmpeg} outlived the agent");
    }

    [Fact]
    public async Task A_wrong_stream_key_is_reported_as_refused_and_never_shown()
    {
        await using var server = await RestreamServer.StartAsync(Channel());
        var environment = new Dictionary<string, string>(Environment) { ["RESTREAM_STREAM_KEY"] = "live_wrong_9876543210" };
        await using var agent = AgentProcess.Start(
            ["push", "--server", $"rtmp://127.0.0.1:{server.RtmpPort}/live", "--source", "test", "--audio", "none",
             "--size", "320x240", "--video-kbps", "300", "--json"], environment);
        Assert.True(await TestPorts.EventuallyAsync(() => agent.State == "refused", TimeSpan.FromSeconds(30)), agent.Output);
        Assert.Contains("BadName", agent.Last!.Value.GetProperty("lastError").GetString());
        agent.Interrupt();
        Assert.Equal(0, await agent.WaitAsync(TimeSpan.FromSeconds(20)));
        Assert.DoesNotContain("live_wrong_9876543210", agent.Output);
    }

    [Fact]
    public async Task Init_writes_a_profile_that_doctor_checks_and_push_uses()
    {
        await using var server = await RestreamServer.StartAsync(Channel());
        var profile = Path.Combine(fixture.Desktop.Directory, $"profile-{Guid.NewGuid():N}.json");
        var (code, output) = await AgentProcess.RunAsync(
            ["init", "--profile", profile, "--server", $"rtmp://127.0.0.1:{server.RtmpPort}/live", "--window", X11Desktop.WindowTitle], Environment, TimeSpan.FromSeconds(30));
        Assert.True(code == 0, output);
        Assert.Contains("\"window\": \"restream-test-clock\"", await File.ReadAllTextAsync(profile));
        Assert.DoesNotContain(Key, await File.ReadAllTextAsync(profile));

        // Everything is in place on this desktop: every check passes, and the key is never printed.
        (code, output) = await AgentProcess.RunAsync(["doctor", "--profile", profile], Environment, TimeSpan.FromSeconds(120));
        Assert.True(code == 0, output);
        foreach (var check in new[] { "ffmpeg", "screen capture (x11grab)", "audio capture (pulse)", "text overlays (drawtext)", "display", "system sound", "encoders", "stream key", "ingest" })
        {
            Assert.Contains($"✓ {check}", output);
        }

        Assert.Contains($"{X11Desktop.SinkName}.monitor", output);
        Assert.Contains("libx264", output);
        Assert.DoesNotContain(Key, output);

        // The same profile, an ingest that is not there: doctor says so and how to fix it.
        var closed = TestPorts.GetFreeTcpPort();
        (code, output) = await AgentProcess.RunAsync(["doctor", "--profile", profile, "--server", $"rtmp://127.0.0.1:{closed}/live"], Environment, TimeSpan.FromSeconds(120));
        Assert.Equal(1, code);
        Assert.Contains($"✗ ingest", output);
        Assert.Contains("fix:", output);

        // push --profile goes live with what init wrote (size from the profile: 1280x720).
        await using var agent = AgentProcess.Start(["push", "--profile", profile, "--video-kbps", "800", "--json"], Environment);
        Assert.True(await TestPorts.EventuallyAsync(() => server.Streams.Find("agent") is { Media.Width: 1280, Media.Height: 720 }, TimeSpan.FromSeconds(30)), agent.Output);
        agent.Interrupt();
        Assert.Equal(0, await agent.WaitAsync(TimeSpan.FromSeconds(20)));
    }

    [Fact]
    public async Task Encoders_reports_libx264_working_and_explains_the_rest()
    {
        var (code, output) = await AgentProcess.RunAsync(["encoders", "--json"], Environment, TimeSpan.FromSeconds(120));
        Assert.True(code == 0, output);
        using var doc = JsonDocument.Parse(output[output.IndexOf('{')..]);
        Assert.Equal("libx264", doc.RootElement.GetProperty("chosen").GetString());
        var encoders = doc.RootElement.GetProperty("encoders").EnumerateArray().ToList();
        Assert.Contains(encoders, e => e.GetProperty("name").GetString() == "libx264" && e.GetProperty("works").GetBoolean());
        // This machine has no GPU: NVENC is listed as not working, with the reason.
        var nvenc = Assert.Single(encoders, e => e.GetProperty("name").GetString() == "h264_nvenc");
        Assert.False(nvenc.GetProperty("works").GetBoolean());
        Assert.False(string.IsNullOrEmpty(nvenc.GetProperty("reason").GetString()));
    }

    [Fact]
    public async Task A_text_file_overlay_is_read_again_while_live()
    {
        var text = Path.Combine(fixture.Desktop.Directory, $"now-playing-{Guid.NewGuid():N}.txt");
        await File.WriteAllTextAsync(text, "i");
        await using var server = await RestreamServer.StartAsync(Channel());
        await using var agent = AgentProcess.Start(["push", "--server", $"rtmp://127.0.0.1:{server.RtmpPort}/live",
            "--region", "800,400,320x240", "--size", "320x240", "--video-kbps", "1500", "--audio", "none",
            "--overlay", $"textfile:{text}@0,100", "--json"], Environment);
        Assert.True(await TestPorts.EventuallyAsync(() => server.Streams.Find("agent") is { VideoFramesIn: > 30 }, TimeSpan.FromSeconds(30)), agent.Output);
        var narrow = await GrabAsync(server);

        // "Now playing" changes: the next frames show the new, much wider text without a restart.
        await File.WriteAllTextAsync(text + ".tmp", "WWWWWWWWWWWW");
        File.Move(text + ".tmp", text, overwrite: true);
        await Task.Delay(1500);
        var wide = await GrabAsync(server);
        var before = Mean(narrow, 100, 100, 200, 40).R;
        var after = Mean(wide, 100, 100, 200, 40).R;
        Assert.True(after - before > 20, $"text area brightness {before:0.0} -> {after:0.0}");
        Assert.Equal(0, agent.Last!.Value.GetProperty("captureRestarts").GetInt64());
        agent.Interrupt();
        await agent.WaitAsync(TimeSpan.FromSeconds(20));
    }

    private async Task<byte[]> GrabAsync(RestreamServer server)
    {
        var file = Path.Combine(fixture.Desktop.Directory, $"frame-{Guid.NewGuid():N}.rgb");
        var (code, output) = await ExternalProcess.RunAsync("ffmpeg",
            ["-hide_banner", "-nostdin", "-loglevel", "error", "-i", $"rtmp://127.0.0.1:{server.RtmpPort}/live/agent",
             "-vf", "select=gte(n\\,10)", "-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "rgb24", "-y", file], TimeSpan.FromSeconds(30));
        Assert.True(code == 0, output);
        return await File.ReadAllBytesAsync(file);
    }

    /// <summary>Pushes a few seconds and grabs one decoded frame from the ingest (played by channel name) as RGB.</summary>
    private async Task<byte[]> GrabFrameAsync(string[] capture)
    {
        await using var server = await RestreamServer.StartAsync(Channel());
        await using var agent = AgentProcess.Start(["push", "--server", $"rtmp://127.0.0.1:{server.RtmpPort}/live", .. capture, "--json"], Environment);
        Assert.True(await TestPorts.EventuallyAsync(() => server.Streams.Find("agent") is { VideoFramesIn: > 45 }, TimeSpan.FromSeconds(30)), agent.Output);
        var frame = await GrabAsync(server);
        agent.Interrupt();
        await agent.WaitAsync(TimeSpan.FromSeconds(20));
        Assert.Equal(320 * 240 * 3, frame.Length);
        return frame;
    }

    private static (double R, double G, double B) Mean(byte[] rgb, int x, int y, int width, int height)
    {
        double r = 0, g = 0, b = 0;
        for (var row = y; row < y + height; row++)
        {
            for (var col = x; col < x + width; col++)
            {
                var i = (row * 320 + col) * 3;
                r += rgb[i];
                g += rgb[i + 1];
                b += rgb[i + 2];
            }
        }

        var n = width * height;
        return (r / n, g / n, b / n);
    }

    private static async Task<(JsonElement Video, JsonElement Audio, double Duration)> ProbeAsync(string file)
    {
        var (code, output) = await ExternalProcess.RunAsync("ffprobe",
            ["-v", "error", "-count_frames", "-show_entries", "stream=codec_type,codec_name,width,height,nb_read_frames:format=duration", "-of", "json", file],
            TimeSpan.FromSeconds(60));
        Assert.True(code == 0, output);
        var doc = JsonDocument.Parse(output[output.IndexOf('{')..]);
        var streams = doc.RootElement.GetProperty("streams").EnumerateArray().ToList();
        var duration = double.Parse(doc.RootElement.GetProperty("format").GetProperty("duration").GetString()!, CultureInfo.InvariantCulture);
        return (streams.Single(s => s.GetProperty("codec_type").GetString() == "video"), streams.Single(s => s.GetProperty("codec_type").GetString() == "audio"), duration);
    }

    [GeneratedRegex(@"mean_volume: (-?[\d.]+) dB")]
    private static partial Regex MeanVolume();
}
