using Restream.Ingest.Srt;
using Restream.IntegrationTests.Infrastructure;

namespace Restream.IntegrationTests;

// Loss recovery is a race against the receiver latency: run where no other test competes for the two CPUs.
[Collection("cpu-heavy")]
public sealed class SrtIngestTests(ApiNginxFixture nginx) : IClassFixture<ApiNginxFixture>
{
    private const string Passphrase = "srt-secret-pass-1";

    [Theory]
    [InlineData("publish:srt_key_13572468", "publish:srt_key_13572468", true)]
    [InlineData("#!::r=srt_key_13572468,m=publish", "srt_key_13572468", true)]
    [InlineData("#!::u=alice,r=k1,m=request", "k1", false)]
    [InlineData("plainkey", "plainkey", true)]
    public void Streamid_forms_give_the_key_and_the_mode(string streamId, string expectedKeyOrPrefix, bool publish)
    {
        var (key, isPublish) = SrtServer.ParseStreamId(streamId);
        Assert.Equal(publish, isPublish);
        Assert.EndsWith(key!, expectedKeyOrPrefix);
    }

    [Fact]
    public void A_session_end_says_whether_the_caller_hung_up_or_the_link_went_silent()
    {
        var lost = new SrtException("Connection was broken", 2001);
        Assert.Equal("the caller hung up", SrtServer.EndReason(-1, lost, TimeSpan.FromMilliseconds(300)));
        Assert.Equal("the link was lost (nothing received for 5.2 s)", SrtServer.EndReason(-1, lost, TimeSpan.FromSeconds(5.2)));
        Assert.Equal("the caller closed", SrtServer.EndReason(0, lost, TimeSpan.Zero));
        Assert.Equal("Operation not supported", SrtServer.EndReason(-1, new SrtException("Operation not supported", 5000), TimeSpan.Zero));
    }

    [Theory]
    [InlineData(212992L, "208 KiB")]
    [InlineData(524288L, "512 KiB")]
    public void A_kernel_that_caps_UDP_buffers_below_a_megabyte_is_named_with_the_sysctl_that_fixes_it(long rmemMax, string shown)
    {
        var warning = SrtServer.ReceiveBufferWarning(rmemMax);
        Assert.NotNull(warning);
        Assert.Contains(shown, warning);
        Assert.Contains("sysctl -w net.core.rmem_max=16777216", warning);
    }

    [Theory]
    [InlineData(1048576L)]
    [InlineData(4194304L)]
    [InlineData(null)]
    public void A_large_enough_or_unknown_kernel_limit_gives_no_warning(long? rmemMax) =>
        Assert.Null(SrtServer.ReceiveBufferWarning(rmemMax));

    [Fact]
    public async Task Ffmpeg_publishes_over_encrypted_SRT_and_the_feed_reaches_an_RTMP_destination_with_every_frame()
    {
        var port = TestPorts.GetFreeUdpPort();
        await using var server = await RestreamServer.StartAsync(new Dictionary<string, string?>
        {
            ["Restream:Srt:Enabled"] = "true",
            ["Restream:Srt:Port"] = port.ToString(System.Globalization.CultureInfo.InvariantCulture),
            ["Restream:Srt:Address"] = "127.0.0.1",
            ["Restream:Srt:Passphrase"] = Passphrase,
            ["Restream:Srt:LatencyMs"] = "200",
            ["Restream:Channels:0:Name"] = "srtshow",
            ["Restream:Channels:0:StreamKey"] = "srt_key_13572468",
            ["Restream:Channels:0:Destinations:0:Name"] = "rtmp-out",
            ["Restream:Channels:0:Destinations:0:Url"] = nginx.Nginx.Url("first"),
            ["Restream:Channels:0:Destinations:0:Key"] = "from-srt",
        });
        using (var http = server.Http())
        {
            var ready = System.Text.Json.JsonDocument.Parse(await http.GetStringAsync("/readyz")).RootElement;
            Assert.Equal($"127.0.0.1:{port}", ready.GetProperty("srt").GetString());
        }

        // linger: the sender waits for its last packets to be delivered before closing. Without it
        // libsrt (live mode, linger 0) drops the final ~latency worth of packets at close.
        string Url(string streamId, string passphrase) =>
            $"srt://127.0.0.1:{port}?streamid={streamId}&passphrase={passphrase}&pbkeylen=16&latency=200000&linger=2";

        // Wrong passphrase: libsrt refuses the handshake; nothing goes live.
        await using (var wrong = Ffmpeg.Publish(Url("publish:srt_key_13572468", "not-the-passphrase"), 3, size: "320x240", bitrateKbps: 300, format: "mpegts"))
        {
            await wrong.WaitAsync(TimeSpan.FromSeconds(30));
            Assert.Null(server.Streams.Find("srtshow"));
        }

        // Wrong key: accepted by SRT, refused by us, counted, closed.
        var rejected = server.Counters.RejectedKeys;
        await using (var wrongKey = Ffmpeg.Publish(Url("publish:not_a_key_0000", Passphrase), 3, size: "320x240", bitrateKbps: 300, format: "mpegts"))
        {
            Assert.True(await TestPorts.EventuallyAsync(() => server.Counters.RejectedKeys > rejected, TimeSpan.FromSeconds(10)), server.Log.Text);
            Assert.Null(server.Streams.Find("srtshow"));
        }

        const int seconds = 10;
        await using (var publisher = Ffmpeg.Publish(Url("#!::r=srt_key_13572468,m=publish", Passphrase), seconds, format: "mpegts"))
        {
            Assert.True(await TestPorts.EventuallyAsync(() => server.Relay.GetDestinations("srtshow") is [{ State: Relay.DestinationState.Live }],
                TimeSpan.FromSeconds(15)), publisher.Tail() + server.Log.Text);
            Assert.Equal(0, await publisher.WaitAsync(TimeSpan.FromSeconds(seconds + 30)));
        }

        // The caller closed; the stream ends and the relay unpublishes.
        Assert.True(await TestPorts.EventuallyAsync(() => server.Streams.LiveStreams.Count == 0, TimeSpan.FromSeconds(15)), server.Log.Text);
        var recording = nginx.Nginx.RecordingOf("first", "from-srt");
        Assert.True(await TestPorts.EventuallyAsync(() => File.Exists(recording), TimeSpan.FromSeconds(10)));
        await Task.Delay(500);
        var streams = await Ffmpeg.ProbeAsync(recording, TimeSpan.FromSeconds(60));
        var video = Assert.Single(streams, s => s.CodecType == "video");
        Assert.Equal(("h264", 1280, 720), (video.CodecName, video.Width, video.Height));
        Assert.Equal("aac", Assert.Single(streams, s => s.CodecType == "audio").CodecName);
        Assert.InRange(video.Frames, seconds * Ffmpeg.Fps * 99 / 100, seconds * Ffmpeg.Fps * 101 / 100);
        Assert.DoesNotContain("srt_key_13572468", server.Log.Text);
        Assert.DoesNotContain(Passphrase, server.Log.Text);
        Assert.Matches(@"\[stream srt/srtshow\] SRT publisher \S+ stopped: the caller (hung up|closed)", server.Log.Text);
    }

    [Fact]
    public async Task Two_percent_loss_each_way_at_200_ms_latency_still_delivers_every_frame()
    {
        var port = TestPorts.GetFreeUdpPort();
        await using var server = await RestreamServer.StartAsync(new Dictionary<string, string?>
        {
            ["Restream:Srt:Enabled"] = "true",
            ["Restream:Srt:Port"] = port.ToString(System.Globalization.CultureInfo.InvariantCulture),
            ["Restream:Srt:Address"] = "127.0.0.1",
            ["Restream:Srt:LatencyMs"] = "200",
            ["Restream:Channels:0:Name"] = "lossy",
            ["Restream:Channels:0:StreamKey"] = "lossy_key_97531864",
            ["Restream:Channels:0:Destinations:0:Name"] = "rtmp-out",
            ["Restream:Channels:0:Destinations:0:Url"] = nginx.Nginx.Url("second"),
            ["Restream:Channels:0:Destinations:0:Key"] = "from-lossy-srt",
        });
        await using var link = new LossyUdpProxy(port, 0.02, after: TimeSpan.FromSeconds(1.5));
        const int seconds = 10;
        await using (var publisher = Ffmpeg.Publish(
            $"srt://127.0.0.1:{link.Port}?streamid=publish:lossy_key_97531864&latency=200000&linger=2", seconds, format: "mpegts"))
        {
            // The link's figures are visible while live: loss seen and repaired by retransmission.
            Assert.True(await TestPorts.EventuallyAsync(() => server.Streams.Find("lossy")?.LinkStats?.Invoke() is { PacketsLost: > 5, PacketsRetransmitted: > 5 },
                TimeSpan.FromSeconds(seconds)), server.Log.Text);
            using var http = server.Http();
            var streams = System.Text.Json.JsonDocument.Parse(await http.GetStringAsync("/api/v1/streams")).RootElement;
            var linkView = streams[0].GetProperty("link");
            Assert.Equal("srt", linkView.GetProperty("protocol").GetString());
            Assert.True(linkView.GetProperty("packetsLost").GetInt64() > 0);
            Assert.True(linkView.GetProperty("packetsReceived").GetInt64() > 100);
            var metrics = await http.GetStringAsync("/metrics");
            Assert.Contains("restream_ingest_link_lost_packets_total{channel=\"lossy\"}", metrics);
            Assert.Equal(0, await publisher.WaitAsync(TimeSpan.FromSeconds(seconds + 30)));
        }

        Assert.True(await TestPorts.EventuallyAsync(() => server.Streams.LiveStreams.Count == 0, TimeSpan.FromSeconds(15)), server.Log.Text);
        Assert.True(link.Dropped > 50, $"the link dropped only {link.Dropped} datagrams");
        // The operator's record of the session: one summary line with what libsrt repaired and what it could not.
        Assert.Matches(@"\[stream srt/lossy\] SRT link: \d+ packets received, [1-9]\d* lost, [1-9]\d* retransmitted, \d+ too late to repair", server.Log.Text);
        var recording = nginx.Nginx.RecordingOf("second", "from-lossy-srt");
        Assert.True(await TestPorts.EventuallyAsync(() => File.Exists(recording), TimeSpan.FromSeconds(10)));
        await Task.Delay(500);
        var video = Assert.Single(await Ffmpeg.ProbeAsync(recording, TimeSpan.FromSeconds(60)), s => s.CodecType == "video");
        Assert.True(video.Frames is >= seconds * Ffmpeg.Fps * 99 / 100 and <= seconds * Ffmpeg.Fps * 101 / 100,
            $"{video.Frames} frames of {seconds * Ffmpeg.Fps}; the proxy dropped {link.Dropped} of {link.Dropped + link.Passed} datagrams; {server.Log.Text}");
    }

    [Fact]
    public async Task Srt_live_transmit_as_the_sender_works_too()
    {
        var port = TestPorts.GetFreeUdpPort();
        var udp = TestPorts.GetFreeUdpPort();
        await using var server = await RestreamServer.StartAsync(new Dictionary<string, string?>
        {
            ["Restream:Srt:Enabled"] = "true",
            ["Restream:Srt:Port"] = port.ToString(System.Globalization.CultureInfo.InvariantCulture),
            ["Restream:Srt:Address"] = "127.0.0.1",
            ["Restream:Srt:Passphrase"] = Passphrase,
            ["Restream:Channels:0:Name"] = "slt",
            ["Restream:Channels:0:StreamKey"] = "slt_key_86420975",
        });

        // ffmpeg encodes to UDP; srt-live-transmit (Debian's srt-tools) carries it over SRT to us.
        await using var transmit = ExternalProcess.Start("srt-live-transmit",
            ["-q", $"udp://127.0.0.1:{udp}", $"srt://127.0.0.1:{port}?streamid=publish:slt_key_86420975&passphrase={Passphrase}&pbkeylen=16&latency=200"]);
        await Task.Delay(500);
        const int seconds = 6;
        await using (var encoder = Ffmpeg.Publish($"udp://127.0.0.1:{udp}?pkt_size=1316", seconds, size: "640x360", bitrateKbps: 800, format: "mpegts"))
        {
            Assert.True(await TestPorts.EventuallyAsync(() => server.Streams.Find("slt") is { FramesIn: > 30 }, TimeSpan.FromSeconds(15)),
                transmit.Tail() + server.Log.Text);
            var hub = server.Streams.Find("slt")!;
            Assert.Equal(("H264", 640, 360), (hub.Media?.VideoCodec, hub.Media?.Width ?? 0, hub.Media?.Height ?? 0));
            Assert.Equal("AAC", hub.Media?.AudioCodec);
            Assert.Equal(0, await encoder.WaitAsync(TimeSpan.FromSeconds(seconds + 30)));
        }

        await Task.Delay(1000); // what srt-live-transmit still holds reaches us within the 200 ms latency
        var hubAfter = server.Streams.Find("slt");
        Assert.NotNull(hubAfter);
        Assert.InRange(hubAfter.VideoFramesIn, seconds * Ffmpeg.Fps * 99 / 100, seconds * Ffmpeg.Fps * 101 / 100);
    }

    [Fact]
    public async Task Srt_destination_is_read_back_by_ffprobe_listening_in_listener_mode()
    {
        var port = TestPorts.GetFreeUdpPort();
        // ffprobe listens (as an SRS SRT port would); our relay calls it.
        var probe = Ffmpeg.ProbeAsync($"srt://127.0.0.1:{port}?mode=listener&latency=200000&streamid=out", TimeSpan.FromSeconds(60));
        await using var server = await RestreamServer.StartAsync(new Dictionary<string, string?>
        {
            ["Restream:Channels:0:Name"] = "srtout",
            ["Restream:Channels:0:StreamKey"] = "srtout_key_1029384756",
            ["Restream:Channels:0:Destinations:0:Name"] = "srs-srt",
            ["Restream:Channels:0:Destinations:0:Url"] = $"srt://127.0.0.1:{port}?latency=200&streamid=#!::r=live/out,m=publish",
        });
        const int seconds = 6;
        await using (var publisher = Ffmpeg.Publish(server.PublishUrl("srtout_key_1029384756"), seconds))
        {
            Assert.True(await TestPorts.EventuallyAsync(() => server.Relay.GetDestinations("srtout") is [{ State: Relay.DestinationState.Live }],
                TimeSpan.FromSeconds(15)), server.Log.Text);

            // The outgoing link's own figures, as an operator sees them in the API while live.
            Assert.True(await TestPorts.EventuallyAsync(() => server.Relay.GetDestinations("srtout") is [{ Link.PacketsSent: > 100 }],
                TimeSpan.FromSeconds(10)), server.Log.Text);
            using var http = server.Http();
            var destination = System.Text.Json.JsonDocument.Parse(await http.GetStringAsync("/api/v1/streams")).RootElement[0].GetProperty("destinations")[0];
            var link = destination.GetProperty("link");
            Assert.Equal("srt", link.GetProperty("protocol").GetString());
            Assert.True(link.GetProperty("packetsSent").GetInt64() > 100);
            Assert.True(link.GetProperty("rttMs").GetDouble() >= 0);
            Assert.Equal(0, link.GetProperty("packetsDropped").GetInt64());
            Assert.Equal(0, await publisher.WaitAsync(TimeSpan.FromSeconds(seconds + 30)));
        }

        var streams = await probe;
        var video = Assert.Single(streams, s => s.CodecType == "video");
        Assert.Equal(("h264", 1280, 720), (video.CodecName, video.Width, video.Height));
        Assert.Equal("aac", Assert.Single(streams, s => s.CodecType == "audio").CodecName);
        Assert.InRange(video.Frames, seconds * Ffmpeg.Fps * 80 / 100, seconds * Ffmpeg.Fps * 101 / 100);
    }

    [Fact]
    public async Task Srt_destination_link_counters_keep_rising_across_a_reconnect()
    {
        var port = TestPorts.GetFreeUdpPort();
        ExternalProcess Listen() => ExternalProcess.Start("ffmpeg",
            ["-nostdin", "-loglevel", "error", "-i", $"srt://127.0.0.1:{port}?mode=listener&latency=200000", "-f", "null", "-"]);
        await using var server = await RestreamServer.StartAsync(new Dictionary<string, string?>
        {
            ["Restream:Channels:0:Name"] = "srtagain",
            ["Restream:Channels:0:StreamKey"] = "srtagain_key_5647382910",
            ["Restream:Channels:0:Destinations:0:Name"] = "decoder",
            ["Restream:Channels:0:Destinations:0:Url"] = $"srt://127.0.0.1:{port}?latency=200",
        });
        await using var first = Listen();
        await using var publisher = Ffmpeg.Publish(server.PublishUrl("srtagain_key_5647382910"), 40, size: "640x360", bitrateKbps: 1500);
        Relay.DestinationStatus Status() => Assert.Single(server.Relay.GetDestinations("srtagain"));
        async Task<double> SentPacketsAsync()
        {
            using var http = server.Http();
            return PrometheusText.Parse(await http.GetStringAsync("/metrics"))
                .Value("restream_destination_link_sent_packets_total", ("channel", "srtagain"), ("destination", "decoder"));
        }

        Assert.True(await TestPorts.EventuallyAsync(() => server.Relay.GetDestinations("srtagain") is [{ State: Relay.DestinationState.Live, Link.PacketsSent: > 300 }],
            TimeSpan.FromSeconds(20)),
            first.Tail() + server.Log.Text);
        var before = await SentPacketsAsync();
        Assert.True(before > 300, $"{before} packets counted while live");

        // The decoder goes away without a word and comes back: libsrt's totals start again at zero.
        first.Kill();
        await first.WaitAsync(TimeSpan.FromSeconds(5)); // gone, and its UDP port free for the next listener
        await using var second = Listen();
        Assert.True(await TestPorts.EventuallyAsync(() => server.Relay.GetDestinations("srtagain") is [{ Reconnects: >= 1, State: Relay.DestinationState.Live, Link.PacketsSent: > 100 }],
            TimeSpan.FromSeconds(25)), second.Tail() + server.Log.Text);
        var current = Status().Link!.PacketsSent;
        var after = await SentPacketsAsync();
        Assert.True(after >= before + current, $"the counter went from {before} to {after}, with {current} packets on the new connection");
        using (var http = server.Http())
        {
            var rtt = PrometheusText.Parse(await http.GetStringAsync("/metrics"))
                .Value("restream_destination_link_rtt_ms", ("channel", "srtagain"), ("destination", "decoder"));
            Assert.True(rtt >= 0);
        }
    }
}
