using System.Diagnostics;
using Microsoft.Extensions.DependencyInjection;
using Restream.IntegrationTests.Infrastructure;
using Restream.Ingest.Hub;
using Restream.Media;
using Restream.Relay;

namespace Restream.IntegrationTests;

/// <summary>
/// Merged reads on a live publisher's socket, end to end: our RTMP client publishes to the server
/// over TCP and a subscriber on the stream's hub notes when each frame arrives.
/// </summary>
public sealed class MergedReadStreamTests
{
    [Theory]
    [InlineData("00:00:00")] // the default: audio pairs with the next video frame
    [InlineData("00:00:00.015")] // paced by the stream's timing under a latency budget (ArrivalPlanner)
    public async Task Audio_keeps_flowing_when_the_publisher_stops_sending_video(string latencyBudget)
    {
        await using var server = await StartServerAsync("merged", latencyBudget);
        await using var publisher = await PublishAsync(server, "merged");
        var registry = server.Services.GetRequiredService<StreamRegistry>();
        StreamHub? hub = null;
        for (var i = 0; i < 100 && (hub = registry.Find("merged")) is null; i++)
        {
            await Task.Delay(50);
        }

        Assert.NotNull(hub);
        // With merged reads on the receive thread (the default), with or without a budget, subscribers
        // are woken once per read (set while the publish is accepted), so every frame below reached
        // this queue through the reader's flush before its next wait.
        for (var i = 0; i < 100 && !hub.DeferWakes; i++)
        {
            await Task.Delay(50);
        }

        Assert.True(hub.DeferWakes, "the hub should wake subscribers once per read");
        var queue = hub.Subscribe();
        var arrivals = new Dictionary<uint, long>();
        var order = new List<(MediaKind Kind, uint Timestamp)>();
        var watching = Task.Run(async () =>
        {
            while (await queue.WaitToReadAsync())
            {
                while (queue.TryDequeue(out var frame))
                {
                    if (!frame.IsSequenceHeader)
                    {
                        lock (arrivals)
                        {
                            order.Add((frame.Kind, frame.Timestamp));
                        }
                    }

                    if (frame.Kind == MediaKind.Audio && !frame.IsSequenceHeader)
                    {
                        lock (arrivals)
                        {
                            arrivals[frame.Timestamp] = Stopwatch.GetTimestamp();
                        }
                    }

                    frame.Release();
                }
            }
        });

        // 3 s of a ~3 Mb/s stream (the mark rises to ~10 ms of it), then 3 s of audio alone.
        var sentAt = new Dictionary<uint, long>();
        var videoSent = new List<uint>();
        var clock = Stopwatch.StartNew();
        var video = new byte[12_000];
        video[0] = 0x17;
        video[1] = 0x01;
        var audio = new byte[400];
        audio[0] = 0xAF;
        audio[1] = 0x01;
        uint nextVideo = 0, nextAudio = 0;
        while (clock.ElapsedMilliseconds < 6000)
        {
            var now = (uint)clock.ElapsedMilliseconds;
            if (now < 3000 && now >= nextVideo)
            {
                video[0] = nextVideo % 2000 == 0 ? (byte)0x17 : (byte)0x27;
                await SendAsync(publisher, MediaKind.Video, nextVideo, video);
                videoSent.Add(nextVideo);
                nextVideo += 33;
            }

            if (now >= nextAudio)
            {
                sentAt[nextAudio + 1] = Stopwatch.GetTimestamp();
                await SendAsync(publisher, MediaKind.Audio, nextAudio + 1, audio);
                nextAudio += 21;
            }

            await Task.Delay(5);
        }

        await Task.Delay(2500); // the watchdog's tick and more
        hub.Unsubscribe(queue);
        await watching.WaitAsync(TimeSpan.FromSeconds(5));

        lock (arrivals)
        {
            var paused = sentAt.Where(s => s.Key > 3500).ToList();
            Assert.NotEmpty(paused);
            Assert.All(paused, s => Assert.True(arrivals.ContainsKey(s.Key), $"audio frame at {s.Key} ms never arrived"));
            // Without the mark following the stream, these would wait for 10 ms of a 3 Mb/s stream's
            // bytes (~10 audio frames); a pause drops the mark within a watchdog tick.
            // Every frame, once and in order, whatever pairing the reads and writes did.
            Assert.Equal(videoSent, order.Where(f => f.Kind == MediaKind.Video).Select(f => f.Timestamp));
            Assert.Equal(sentAt.Keys.Order(), order.Where(f => f.Kind == MediaKind.Audio).Select(f => f.Timestamp));
            var worst = paused.Max(s => Stopwatch.GetElapsedTime(s.Value, arrivals[s.Key]).TotalMilliseconds);
            Assert.True(worst < 2000, $"audio waited {worst:0} ms during the video pause");
        }

        // Our client sends each message in one write with TCP_NODELAY: nothing it sends waits for our
        // acknowledgements, and it sends at its timestamps' pace, so its reads stay merged.
        Assert.DoesNotContain(PromptReadsLine, server.Log.Text);
        Assert.Equal(0, server.Counters.PromptReadPublishers);
    }

    [Fact]
    public async Task A_publisher_that_pauses_keeps_planned_reads_under_the_budget()
    {
        await using var server = await StartServerAsync("pause", "00:00:00.015");
        await using var publisher = await PublishAsync(server, "pause");

        // 2 s of audio and video at their pace, 3 s of nothing (a stalled network), 2 s more: the
        // planner looks now and then during the pause, which is not a publisher it cannot predict.
        var video = new byte[12_000];
        var audio = new byte[400];
        audio[0] = 0xAF;
        audio[1] = 0x01;
        var clock = Stopwatch.StartNew();
        uint nextVideo = 0, nextAudio = 0;
        while (clock.ElapsedMilliseconds < 7000)
        {
            var now = (uint)clock.ElapsedMilliseconds;
            var paused = now is >= 2000 and < 5000;
            if (!paused && now >= nextVideo)
            {
                video[0] = nextVideo % 2000 == 0 ? (byte)0x17 : (byte)0x27;
                video[1] = 0x01;
                await SendAsync(publisher, MediaKind.Video, nextVideo + 1, video);
            }

            if (!paused && now >= nextAudio)
            {
                await SendAsync(publisher, MediaKind.Audio, nextAudio + 1, audio);
            }

            nextVideo = now >= nextVideo ? nextVideo + 33 : nextVideo;
            nextAudio = now >= nextAudio ? nextAudio + 21 : nextAudio;
            await Task.Delay(5);
        }

        await Task.Delay(2500); // a watchdog tick and more
        Assert.Equal(0, server.Counters.PromptReadPublishers);
        Assert.DoesNotContain("cannot predict", server.Log.Text);
    }

    [Fact]
    public async Task A_publisher_whose_frames_stalled_in_a_lossy_moment_goes_back_to_merged_reads()
    {
        await using var server = await StartServerAsync("lossy", "00:00:00");
        await using var publisher = await PublishAsync(server, "lossy");

        // 3 s of a ~3 Mb/s stream (the merged-read mark rises to ~10 ms of it); then a moment in which
        // three tiny messages each sit alone below the mark until the wait's limit, as the tail of a
        // message held up by packet loss would; then 5 s more of whole messages.
        var clock = Stopwatch.StartNew();
        await PublishAtPaceAsync(publisher, 3000, _ => { });

        // A video frame wakes the reader; then each tiny message arrives within the next wait,
        // alone, and waits out its 40 ms limit (four times the 10 ms window). A busy machine may
        // send one too late for its wait (it then waits with the next): a few more tries.
        var video = new byte[12_000];
        video[0] = 0x27;
        video[1] = 0x01;
        for (var attempt = 0; attempt < 5 && server.Counters.PromptReadPublishers == 0; attempt++)
        {
            await SendAsync(publisher, MediaKind.Video, (uint)clock.ElapsedMilliseconds, video);
            await Task.Delay(10);
            for (var i = 0; i < 3; i++)
            {
                await SendAsync(publisher, MediaKind.Audio, (uint)clock.ElapsedMilliseconds, [0xAF, 0x01, 1, 2, 3, 4, 5, 6, 7, 8]);
                await Task.Delay(50);
            }

            await TestPorts.EventuallyAsync(() => server.Counters.PromptReadPublishers == 1, TimeSpan.FromSeconds(1.5)); // a second's checks
        }

        Assert.True(server.Counters.PromptReadPublishers == 1, $"three stalls did not switch the publisher to prompt reads:\n{server.Log.Text}");
        await PublishAtPaceAsync(publisher, 5000, _ => { }, startAt: (uint)clock.ElapsedMilliseconds);

        // Hundreds of reads without a piece of a message: merged reads again, logged, and not counted
        // as another publisher read promptly.
        Assert.True(await TestPorts.EventuallyAsync(() => server.Log.Text.Contains("sends whole messages after all"), TimeSpan.FromSeconds(5)),
            $"the publisher stayed on prompt reads:\n{server.Log.Text}");
        Assert.Equal(1, server.Counters.PromptReadPublishers);
    }

    private const string PromptReadsLine = "holds back its data until we acknowledge";

    [Fact]
    public async Task An_ffmpeg_publisher_that_sends_in_bursts_is_read_as_it_arrives_under_the_budget()
    {
        await using var server = await StartServerAsync("bursts", "00:00:00.015");

        // With TCP_NODELAY FFmpeg waits for nothing, but its muxer sends audio with the next video
        // frame, late for the audio's own time: the planner's timers keep finding nothing to read.
        await using var ffmpeg = Ffmpeg.Publish(server.PublishUrl("live_bursts_0123456789"), seconds: 10, size: "640x360", bitrateKbps: 1000,
            outputOptions: ["-tcp_nodelay", "1"]);
        Assert.True(await TestPorts.EventuallyAsync(() => server.Counters.PromptReadPublishers == 1, TimeSpan.FromSeconds(25)),
            $"the server kept planning reads for a publisher it cannot predict:\n{server.Log.Text}");
        Assert.Equal(0, await ffmpeg.WaitAsync(TimeSpan.FromSeconds(30)));

        var frames = await FramesPublishedAsync(server);
        Assert.True(frames >= 10 * Ffmpeg.Fps, $"{frames} frames");
    }

    [Theory]
    [InlineData("00:00:00")]
    [InlineData("00:00:00.015")]
    public async Task An_ffmpeg_publisher_is_read_as_its_bytes_arrive(string latencyBudget)
    {
        await using var server = await StartServerAsync("nagle", latencyBudget);

        // FFmpeg's own RTMP client writes a message's chunk header and its body apart and leaves Nagle's
        // algorithm on: with merged reads the header would wait below the mark, and the body behind it
        // in FFmpeg's kernel, until a timer. The reader sees it and reads every byte as it comes.
        // Under the budget the planner may see FFmpeg's bursts first (its timers finding nothing): either
        // way the publisher is read promptly, once.
        await using var ffmpeg = Ffmpeg.Publish(server.PublishUrl("live_nagle_0123456789"), seconds: 8, size: "640x360", bitrateKbps: 1000);
        Assert.True(await TestPorts.EventuallyAsync(() => server.Counters.PromptReadPublishers == 1, TimeSpan.FromSeconds(20)),
            $"the server did not start reading FFmpeg promptly:\n{server.Log.Text}");
        if (latencyBudget == "00:00:00")
        {
            Assert.Contains(PromptReadsLine, server.Log.Text);
        }

        Assert.Equal(0, await ffmpeg.WaitAsync(TimeSpan.FromSeconds(30)));

        // Seconds of it read promptly, hundreds of reads, and it still is: a chunk's header alone in
        // about every other read is a publisher that waits for us, not a lossy moment.
        Assert.DoesNotContain("merged reads again", server.Log.Text);

        // Every frame arrived: 8 s at 30 fps, counted by the session's end line.
        var frames = await FramesPublishedAsync(server);
        Assert.True(frames >= 8 * Ffmpeg.Fps, $"{frames} frames");

        // Operators see it too, beside the process's own figures.
        using var http = server.Http(apiKey: null);
        var metrics = PrometheusText.Parse(await http.GetStringAsync("/metrics"));
        Assert.Equal(1, metrics.Value("restream_ingest_prompt_read_publishers_total"));
        Assert.True(metrics.Value("process_cpu_seconds_total") > 0);
        Assert.Contains(metrics, s => s.Name == "dotnet_collection_count_total");
    }

    [Fact]
    public async Task A_paced_publisher_has_its_checks_made_between_reads_and_the_watchdog_wakes_less()
    {
        // A publisher under the budget for 8 s: it is paced, so its reader runs the watchdog's checks
        // between reads and the timer backs off from a tick a second to one every 5 s.
        await using var server = await StartServerAsync("paced", "00:00:00.015");
        await using var publisher = await PublishAsync(server, "paced");
        long ticksAtTwo = -1;
        await PublishAtPaceAsync(publisher, 8000, elapsed =>
        {
            if (elapsed >= 2000 && ticksAtTwo < 0)
            {
                ticksAtTwo = server.Counters.WatchdogTicks; // past the publish and the first tick that backs the timer off
            }
        });

        // 6 s at a tick a second would be ~6; backed off to 5 s, one or two.
        var ticks = server.Counters.WatchdogTicks - ticksAtTwo;
        Assert.InRange(ticks, 0, 3);

        // That the checks go on between reads meanwhile is what the lossy-moment test above shows: its
        // paced publisher is switched to prompt reads and back within a second or so of its stalls.
        Assert.Equal(0, server.Counters.PromptReadPublishers);
    }

    [Fact]
    public async Task A_paced_publisher_that_goes_silent_is_closed_by_the_idle_timeout()
    {
        // The watchdog backs off while the reader makes its checks, but the idle timeout is still its
        // own: a publisher that stops sending (the reader waits, nothing wakes it) is closed on time.
        await using var server = await StartServerAsync("silent", "00:00:00.015", idleTimeout: "00:00:06");
        await using var publisher = await PublishAsync(server, "silent");
        await PublishAtPaceAsync(publisher, 2000, _ => { });

        var silentSince = Stopwatch.StartNew();
        Assert.True(await TestPorts.EventuallyAsync(() => server.Log.Text.Contains("publisher sent nothing for 6 s"), TimeSpan.FromSeconds(15)),
            $"a silent publisher was not closed:\n{server.Log.Text}");
        Assert.True(silentSince.Elapsed >= TimeSpan.FromSeconds(5), $"closed after {silentSince.Elapsed.TotalSeconds:0.0} s of silence, before the 6 s idle timeout");
    }

    /// <summary>The frames the publisher sent, from the line the server logs when it stops.</summary>
    private static async Task<long> FramesPublishedAsync(RestreamServer server)
    {
        Assert.True(await TestPorts.EventuallyAsync(() => server.Log.Text.Contains("stopped after"), TimeSpan.FromSeconds(10)));
        var ended = server.Log.Lines.Single(l => l.Contains("stopped after"));
        return long.Parse(System.Text.RegularExpressions.Regex.Match(ended, @"stopped after (\d+) frames").Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture);
    }

    /// <summary>
    /// ~3 Mb/s of 30 fps video (a keyframe every 2 s) and AAC-sized audio every 21 ms, each sent as
    /// its timestamp comes due, for <paramref name="milliseconds"/>; <paramref name="step"/> sees the
    /// elapsed time before each step. Timestamps start at <paramref name="startAt"/>.
    /// </summary>
    private static async Task PublishAtPaceAsync(RtmpPublishClient publisher, long milliseconds, Action<long> step, uint startAt = 0)
    {
        var video = new byte[12_000];
        video[1] = 0x01;
        var audio = new byte[400];
        audio[0] = 0xAF;
        audio[1] = 0x01;
        var clock = Stopwatch.StartNew();
        uint nextVideo = 0, nextAudio = 0;
        while (clock.ElapsedMilliseconds < milliseconds)
        {
            var now = (uint)clock.ElapsedMilliseconds;
            step(now);
            if (now >= nextVideo)
            {
                video[0] = nextVideo % 2000 == 0 ? (byte)0x17 : (byte)0x27;
                await SendAsync(publisher, MediaKind.Video, startAt + nextVideo + 1, video);
                nextVideo += 33;
            }

            if (now >= nextAudio)
            {
                await SendAsync(publisher, MediaKind.Audio, startAt + nextAudio + 1, audio);
                nextAudio += 21;
            }

            await Task.Delay(5);
        }
    }

    /// <summary>Our RTMP client publishing to <paramref name="channel"/>, its sequence headers sent.</summary>
    private static async Task<RtmpPublishClient> PublishAsync(RestreamServer server, string channel)
    {
        var publisher = await RtmpPublishClient.ConnectAsync(
            new PublishTarget(new Uri($"rtmp://127.0.0.1:{server.RtmpPort}/live"), $"live_{channel}_0123456789"), null, TimeProvider.System, CancellationToken.None);
        _ = publisher.ReadUntilClosedAsync(CancellationToken.None).ContinueWith(_ => { }, TaskScheduler.Default);
        await SendAsync(publisher, MediaKind.Video, 0, [0x17, 0x00, 0, 0, 0, 1, 0x64, 0, 0x1F]);
        await SendAsync(publisher, MediaKind.Audio, 0, [0xAF, 0x00, 0x11, 0x90]);
        return publisher;
    }

    /// <summary>Our server with one channel, <paramref name="channel"/>, whose stream key is <c>live_{channel}_0123456789</c>.</summary>
    private static Task<RestreamServer> StartServerAsync(string channel, string latencyBudget, string idleTimeout = "00:00:30") =>
        RestreamServer.StartAsync(new Dictionary<string, string?>
        {
            ["Restream:Channels:0:Name"] = channel,
            ["Restream:Channels:0:StreamKey"] = $"live_{channel}_0123456789",
            ["Restream:Rtmp:LatencyBudget"] = latencyBudget,
            ["Restream:Rtmp:IdleTimeout"] = idleTimeout,
        });

    private static async Task SendAsync(RtmpPublishClient publisher, MediaKind kind, uint timestamp, byte[] body)
    {
        var frame = MediaFrame.Copy(kind, timestamp, body);
        try
        {
            await publisher.SendFrameAsync(frame, CancellationToken.None);
        }
        finally
        {
            frame.Release();
        }
    }
}
