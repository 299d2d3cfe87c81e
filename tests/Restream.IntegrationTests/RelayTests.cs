using Restream.IntegrationTests.Infrastructure;
using Restream.Relay;

namespace Restream.IntegrationTests;

/// <summary>
/// One nginx-rtmp with three applications, and the same nginx behind stunnel as an RTMPS
/// destination; our server relays one ffmpeg feed to all four.
/// </summary>
public sealed class RelayFixture : IAsyncLifetime
{
    public NginxRtmp Nginx { get; } = new(["twitch", "youtube", "kick", "secure"]);
    public TlsTerminator? Tls { get; private set; }
    public TestCertificate? Certificate { get; private set; }

    public async Task InitializeAsync()
    {
        await Nginx.StartAsync();
        Certificate = await TestCertificate.CreateAsync();
        Tls = new TlsTerminator(Nginx.Port, Certificate);
        await Tls.StartAsync();
    }

    public async Task DisposeAsync()
    {
        if (Tls is not null)
        {
            await Tls.DisposeAsync();
        }

        await Nginx.DisposeAsync();
    }
}

public sealed class RelayTests(RelayFixture fixture) : IClassFixture<RelayFixture>
{
    private const int Seconds = 10;
    private const int ExpectedVideoFrames = Seconds * Ffmpeg.Fps;

    [Fact]
    public async Task Feed_reaches_three_rtmp_and_one_rtmps_destination_with_every_frame()
    {
        var nginx = fixture.Nginx;
        await using var server = await RestreamServer.StartAsync(new Dictionary<string, string?>
        {
            ["Restream:Channels:0:Name"] = "main",
            ["Restream:Channels:0:StreamKey"] = "live_main_0123456789",
            ["Restream:Channels:0:Destinations:0:Name"] = "twitch",
            ["Restream:Channels:0:Destinations:0:Url"] = nginx.Url("twitch"),
            ["Restream:Channels:0:Destinations:0:Key"] = "relay-a",
            ["Restream:Channels:0:Destinations:1:Name"] = "youtube",
            ["Restream:Channels:0:Destinations:1:Url"] = nginx.Url("youtube"),
            ["Restream:Channels:0:Destinations:1:Key"] = "relay-a",
            ["Restream:Channels:0:Destinations:2:Name"] = "kick",
            ["Restream:Channels:0:Destinations:2:Url"] = nginx.Url("kick") + "/relay-a",
            ["Restream:Channels:0:Destinations:3:Name"] = "secure",
            ["Restream:Channels:0:Destinations:3:Url"] = $"rtmps://localhost:{fixture.Tls!.Port}/secure",
            ["Restream:Channels:0:Destinations:3:Key"] = "relay-a",
            ["Restream:Relay:TrustedCertificateFile"] = fixture.Certificate!.CertificateFile,
        });

        await using (var publisher = Ffmpeg.Publish(server.PublishUrl("live_main_0123456789"), Seconds))
        {
            Assert.True(await TestPorts.EventuallyAsync(
                () => server.Relay.GetDestinations("main") is { Count: 4 } d && d.All(x => x.State == DestinationState.Live),
                TimeSpan.FromSeconds(10)), Describe(server));
            Assert.Equal(0, await publisher.WaitAsync(TimeSpan.FromSeconds(Seconds + 30)));
        }

        // The pushers drain and unpublish; nginx closes its recordings then.
        Assert.True(await TestPorts.EventuallyAsync(() => server.Streams.LiveStreams.Count == 0, TimeSpan.FromSeconds(10)));
        foreach (var app in nginx.Applications)
        {
            var recording = nginx.RecordingOf(app, "relay-a");
            Assert.True(await TestPorts.EventuallyAsync(() => File.Exists(recording), TimeSpan.FromSeconds(10)), $"{app}: nothing recorded\n{nginx.ReadLog()}");
            await Task.Delay(500);
            var streams = await Ffmpeg.ProbeAsync(recording, TimeSpan.FromSeconds(60));
            var video = Assert.Single(streams, s => s.CodecType == "video");
            var audio = Assert.Single(streams, s => s.CodecType == "audio");
            Assert.Equal(("h264", 1280, 720), (video.CodecName, video.Width, video.Height));
            Assert.Equal("aac", audio.CodecName);
            Assert.InRange(video.Frames, ExpectedVideoFrames * 99 / 100, ExpectedVideoFrames * 101 / 100);
        }

        Assert.DoesNotContain("live_main_0123456789", server.Log.Text);
        Assert.DoesNotContain("relay-a", server.Log.Text);
    }

    [Fact]
    public async Task Down_or_killed_destination_reconnects_within_two_seconds_and_others_lose_nothing()
    {
        var stable = fixture.Nginx;
        await using var lateNginx = new NginxRtmp(["late"]);
        await using var flakyNginx = new NginxRtmp(["flaky"]);
        await flakyNginx.StartAsync();
        const int seconds = 16;
        await using var server = await RestreamServer.StartAsync(new Dictionary<string, string?>
        {
            ["Restream:Channels:0:Name"] = "resilient",
            ["Restream:Channels:0:StreamKey"] = "resilient_key_987654",
            ["Restream:Channels:0:Destinations:0:Name"] = "stable",
            ["Restream:Channels:0:Destinations:0:Url"] = stable.Url("youtube"),
            ["Restream:Channels:0:Destinations:0:Key"] = "stable-b",
            ["Restream:Channels:0:Destinations:1:Name"] = "late",
            ["Restream:Channels:0:Destinations:1:Url"] = lateNginx.Url("late"),
            ["Restream:Channels:0:Destinations:1:Key"] = "late-b",
            ["Restream:Channels:0:Destinations:2:Name"] = "flaky",
            ["Restream:Channels:0:Destinations:2:Url"] = flakyNginx.Url("flaky"),
            ["Restream:Channels:0:Destinations:2:Key"] = "flaky-b",
        });

        DestinationStatus Status(string name) => server.Relay.GetDestinations("resilient").Single(d => d.Name == name);
        await using (var publisher = Ffmpeg.Publish(server.PublishUrl("resilient_key_987654"), seconds))
        {
            Assert.True(await TestPorts.EventuallyAsync(() => server.Relay.GetDestinations("resilient").Count == 3 && Status("stable").State == DestinationState.Live, TimeSpan.FromSeconds(10)));
            Assert.True(await TestPorts.EventuallyAsync(() => Status("flaky").State == DestinationState.Live, TimeSpan.FromSeconds(5)));

            // The late destination is down at start: the relay keeps trying.
            Assert.True(await TestPorts.EventuallyAsync(() => Status("late").Reconnects >= 2, TimeSpan.FromSeconds(5)), Describe(server));
            Assert.NotEqual(DestinationState.Live, Status("late").State);
            await lateNginx.StartAsync();
            var cameUp = DateTime.UtcNow;
            Assert.True(await TestPorts.EventuallyAsync(() => Status("late").State == DestinationState.Live, TimeSpan.FromSeconds(2)),
                $"late destination not live within 2 s of coming up: {Describe(server)}");
            var lateDelay = DateTime.UtcNow - cameUp;

            // The flaky destination dies mid-stream and comes back on the same port.
            await Task.Delay(1000);
            await flakyNginx.KillAsync();
            Assert.True(await TestPorts.EventuallyAsync(() => Status("flaky").State != DestinationState.Live, TimeSpan.FromSeconds(5)));
            await Task.Delay(2000);
            await flakyNginx.StartAsync();
            var flakyUp = DateTime.UtcNow;
            Assert.True(await TestPorts.EventuallyAsync(() => Status("flaky").State == DestinationState.Live, TimeSpan.FromSeconds(2)),
                $"flaky destination not live within 2 s of coming back: {Describe(server)}");
            Console.WriteLine($"reconnect after coming up: late {lateDelay.TotalMilliseconds:0} ms, flaky {(DateTime.UtcNow - flakyUp).TotalMilliseconds:0} ms");

            Assert.Equal(0, await publisher.WaitAsync(TimeSpan.FromSeconds(seconds + 30)));
        }

        Assert.True(await TestPorts.EventuallyAsync(() => server.Streams.LiveStreams.Count == 0, TimeSpan.FromSeconds(10)));
        var recording = stable.RecordingOf("youtube", "stable-b");
        Assert.True(await TestPorts.EventuallyAsync(() => File.Exists(recording), TimeSpan.FromSeconds(10)));
        await Task.Delay(500);
        var video = Assert.Single(await Ffmpeg.ProbeAsync(recording, TimeSpan.FromSeconds(60)), s => s.CodecType == "video");
        Assert.Equal(seconds * Ffmpeg.Fps, video.Frames); // not a single frame lost on the healthy destination

        var late = Assert.Single(await Ffmpeg.ProbeAsync(lateNginx.RecordingOf("late", "late-b"), TimeSpan.FromSeconds(60)), s => s.CodecType == "video");
        Assert.True(late.Frames > Ffmpeg.Fps * 3, $"late destination got only {late.Frames} frames");
    }

    [Fact]
    public async Task Stalled_destination_drops_whole_gops_and_never_delays_the_others()
    {
        await using var stalled = new StallingRtmpServer();
        const int seconds = 12;
        await using var server = await RestreamServer.StartAsync(new Dictionary<string, string?>
        {
            ["Restream:Channels:0:Name"] = "stall",
            ["Restream:Channels:0:StreamKey"] = "stall_key_1122334455",
            ["Restream:Channels:0:Destinations:0:Name"] = "healthy",
            ["Restream:Channels:0:Destinations:0:Url"] = fixture.Nginx.Url("kick"),
            ["Restream:Channels:0:Destinations:0:Key"] = "healthy-c",
            ["Restream:Channels:0:Destinations:1:Name"] = "stalled",
            ["Restream:Channels:0:Destinations:1:Url"] = $"rtmp://127.0.0.1:{stalled.Port}/app",
            ["Restream:Channels:0:Destinations:1:Key"] = "stalled-c",
            // A small queue so the stall shows within seconds: 3 s of this feed.
            ["Restream:Relay:QueueBytes"] = "1200000",
            ["Restream:Relay:SocketSendBuffer"] = "65536",
        });

        DestinationStatus Status(string name) => server.Relay.GetDestinations("stall").Single(d => d.Name == name);
        await using (var publisher = Ffmpeg.Publish(server.PublishUrl("stall_key_1122334455"), seconds))
        {
            Assert.True(await TestPorts.EventuallyAsync(() => server.Relay.GetDestinations("stall").Count == 2 && Status("stalled").State == DestinationState.Live, TimeSpan.FromSeconds(10)), Describe(server));
            Assert.True(await TestPorts.EventuallyAsync(() => Status("stalled").FramesDropped > 0, TimeSpan.FromSeconds(seconds)),
                $"the stalled destination never dropped: {Describe(server)}");
            Assert.Equal(DestinationState.Live, Status("healthy").State);
            Assert.Equal(0, Status("healthy").FramesDropped);
            var hub = server.Streams.Find("stall");
            Assert.NotNull(hub);
            Assert.Equal(0, await publisher.WaitAsync(TimeSpan.FromSeconds(seconds + 30)));
        }

        Assert.True(await TestPorts.EventuallyAsync(() => server.Streams.LiveStreams.Count == 0, TimeSpan.FromSeconds(10)));
        Assert.Equal(1, stalled.PublishesAccepted);
        var recording = fixture.Nginx.RecordingOf("kick", "healthy-c");
        Assert.True(await TestPorts.EventuallyAsync(() => File.Exists(recording), TimeSpan.FromSeconds(10)));
        await Task.Delay(500);
        var video = Assert.Single(await Ffmpeg.ProbeAsync(recording, TimeSpan.FromSeconds(60)), s => s.CodecType == "video");
        Assert.Equal(seconds * Ffmpeg.Fps, video.Frames);
    }

    private static string Describe(RestreamServer server) =>
        string.Join("; ", server.Streams.LiveStreams.SelectMany(s => server.Relay.GetDestinations(s.Name))
            .Select(d => $"{d.Name}={d.State} ({d.LastError})")) + "\n" + string.Join('\n', server.Log.Lines.TakeLast(20));
}
