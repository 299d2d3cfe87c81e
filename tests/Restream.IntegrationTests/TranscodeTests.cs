using System.Diagnostics;
using System.Text.RegularExpressions;
using Microsoft.Extensions.DependencyInjection;
using Restream.IntegrationTests.Infrastructure;
using Restream.Transcode;

namespace Restream.IntegrationTests;

/// <summary>Tests that load both cores (a whole encoding ladder) run alone, so timing-bound tests beside them stay honest.</summary>
[CollectionDefinition("cpu-heavy", DisableParallelization = true)]
public sealed class CpuHeavyCollection;

[Collection("cpu-heavy")]
public sealed class TranscodeTests
{
    [Fact]
    public async Task Live_stream_becomes_an_HLS_ladder_within_ten_seconds_and_ffmpeg_goes_with_the_stream()
    {
        var output = TestPorts.NewTempDirectory("hls");
        await using var server = await RestreamServer.StartAsync(new Dictionary<string, string?>
        {
            ["Restream:Channels:0:Name"] = "abr",
            ["Restream:Channels:0:StreamKey"] = "abr_key_5647382910",
            ["Restream:Transcode:Enabled"] = "true",
            ["Restream:Transcode:OutputDirectory"] = output,
            ["Restream:Transcode:Preset"] = "ultrafast", // CI has two cores for the encoder, the source and us
        });
        var transcode = server.Services.GetRequiredService<TranscodeService>();
        using var http = server.Http(apiKey: null);
        var master = Path.Combine(output, "abr", "master.m3u8");
        int? ffmpegPid = null;
        await using (var publisher = Ffmpeg.Publish(server.PublishUrl("abr_key_5647382910"), 16))
        {
            var started = Stopwatch.StartNew();
            Assert.True(await TestPorts.EventuallyAsync(() => File.Exists(master), TimeSpan.FromSeconds(10), 200),
                $"no master playlist after 10 s: {transcode.Find("abr")?.Ffmpeg.LastError}\n{server.Log.Text}");
            Console.WriteLine($"master playlist after {started.Elapsed.TotalSeconds:0.0} s");
            ffmpegPid = transcode.Find("abr")?.Ffmpeg.ProcessId;
            Assert.NotNull(ffmpegPid);

            var text = await File.ReadAllTextAsync(master);
            Assert.Contains("RESOLUTION=1280x720", text);
            Assert.Contains("RESOLUTION=854x480", text);
            Assert.Contains("RESOLUTION=640x360", text);
            Assert.Contains("BANDWIDTH=", text);
            Assert.Contains("CODECS=\"avc1.", text);
            Assert.Equal(3, Regex.Matches(text, "FRAME-RATE=30.000").Count);

            // Served over HTTP with the HLS type, CORS and no caching of playlists; DASH over the same segments.
            var response = await http.GetAsync("/hls/abr/master.m3u8");
            Assert.Equal(System.Net.HttpStatusCode.OK, response.StatusCode);
            Assert.Equal("application/vnd.apple.mpegurl", response.Content.Headers.ContentType?.MediaType);
            Assert.Equal("*", response.Headers.GetValues("Access-Control-Allow-Origin").Single());
            Assert.Equal("no-cache", response.Headers.CacheControl?.ToString());
            var mpd = await http.GetAsync("/dash/abr/manifest.mpd");
            Assert.Equal("application/dash+xml", mpd.Content.Headers.ContentType?.MediaType);
            Assert.Equal(System.Net.HttpStatusCode.NotFound, (await http.GetAsync("/hls/abr/..%2F..%2Fetc%2Fpasswd")).StatusCode);

            // Let a few segments accumulate, then read each rendition back.
            await Task.Delay(6000);
            var plan = transcode.Find("abr")!.Ladder;
            Assert.Equal([(1280, 720), (854, 480), (640, 360)], plan.Select(r => (r.Width, r.Height)));
            Console.WriteLine("planned kbps: " + string.Join(", ", plan.Select(r => r.VideoKbps)));
            for (var i = 0; i < plan.Count; i++)
            {
                var (width, height, kbps) = (plan[i].Width, plan[i].Height, plan[i].VideoKbps);
                var playlist = Path.Combine(output, "abr", $"media_{i}.m3u8");
                var lines = await File.ReadAllLinesAsync(playlist);
                var segments = lines.Where(l => l.EndsWith(".m4s", StringComparison.Ordinal) && !l.StartsWith('#'))
                    .Select(l => int.Parse(Regex.Match(l, @"(\d+)\.m4s").Groups[1].Value)).ToList();
                Assert.True(segments.Count >= 3, $"rendition {i}: {segments.Count} segments");
                Assert.Equal(Enumerable.Range(segments[0], segments.Count), segments); // no gaps
                var streams = await Ffmpeg.ProbeAsync(playlist, TimeSpan.FromSeconds(60), countFrames: false);
                var video = Assert.Single(streams, s => s.CodecType == "video");
                Assert.Equal(("h264", width, height), (video.CodecName, video.Width, video.Height));

                // Bitrate within ±20 % of plan, from the completed 2 s segments on disk.
                var sizes = segments.SkipLast(1).Select(n => new FileInfo(Path.Combine(output, "abr", $"chunk-{i}-{n:00000}.m4s")).Length).ToList();
                var measured = sizes.Sum() * 8 / 1000.0 / (sizes.Count * 2);
                Console.WriteLine($"rendition {i}: planned {kbps} kb/s, measured {measured:0} kb/s");
                Assert.InRange(measured, kbps * 0.8, kbps * 1.2);
            }

            var dash = await Ffmpeg.ProbeAsync(Path.Combine(output, "abr", "manifest.mpd"), TimeSpan.FromSeconds(60), countFrames: false);
            Assert.Equal(3, dash.Count(s => s.CodecType == "video"));
            Assert.Contains(dash, s => s.CodecType == "audio" && s.CodecName == "aac");

            Assert.Equal(0, await publisher.WaitAsync(TimeSpan.FromSeconds(40)));
        }

        // The stream ended: its ffmpeg is gone.
        Assert.True(await TestPorts.EventuallyAsync(() => !ProcessTree.IsRunning(ffmpegPid!.Value), TimeSpan.FromSeconds(10)), "ffmpeg outlived the stream");
    }

    [Fact]
    public async Task Low_latency_hls_lists_parts_serves_them_by_range_and_holds_blocking_reloads()
    {
        var output = TestPorts.NewTempDirectory("llhls");
        await using var server = await RestreamServer.StartAsync(new Dictionary<string, string?>
        {
            ["Restream:Channels:0:Name"] = "ll",
            ["Restream:Channels:0:StreamKey"] = "ll_key_5647382910",
            ["Restream:Transcode:Enabled"] = "true",
            ["Restream:Transcode:LowLatency"] = "true",
            ["Restream:Transcode:OutputDirectory"] = output,
            ["Restream:Transcode:Preset"] = "ultrafast",
        });
        using var http = server.Http(apiKey: null);
        await using var publisher = Ffmpeg.Publish(server.PublishUrl("ll_key_5647382910"), 25, size: "640x360", bitrateKbps: 800);
        string text = "";
        Assert.True(await TestPorts.EventuallyAsync(() =>
        {
            var response = http.GetAsync("/hls/ll/media_0.m3u8").Result;
            text = response.IsSuccessStatusCode ? response.Content.ReadAsStringAsync().Result : "";
            return Regex.Matches(text, "#EXT-X-PART:").Count >= 6 && text.Split('\n').Count(l => l.EndsWith(".m4s", StringComparison.Ordinal)) >= 2;
        }, TimeSpan.FromSeconds(15), 250), $"no parts listed: {text}\n{server.Log.Text}");
        Assert.Contains("#EXT-X-PART-INF:PART-TARGET=0.5", text);
        Assert.Contains("#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES", text);

        // A part is a byte range of its segment that starts with a moof box.
        var part = Regex.Matches(text, "#EXT-X-PART:DURATION=([\\d.]+),URI=\"([^\"]+)\",BYTERANGE=\"(\\d+)@(\\d+)\"")[^1];
        var (uri, length, offset) = (part.Groups[2].Value, long.Parse(part.Groups[3].Value), long.Parse(part.Groups[4].Value));
        Assert.InRange(double.Parse(part.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture), 0.3, 0.7);
        using var request = new HttpRequestMessage(HttpMethod.Get, $"/hls/ll/{uri}");
        request.Headers.Range = new System.Net.Http.Headers.RangeHeaderValue(offset, offset + length - 1);
        using var ranged = await http.SendAsync(request);
        Assert.Equal(System.Net.HttpStatusCode.PartialContent, ranged.StatusCode);
        var bytes = await ranged.Content.ReadAsByteArrayAsync();
        Assert.Equal(length, bytes.Length);
        Assert.Equal("moof", System.Text.Encoding.ASCII.GetString(bytes, 4, 4));

        // Blocking reload: ask for the part after next; the answer waits until it exists, and lists it.
        var sequence = long.Parse(Regex.Match(text, "#EXT-X-MEDIA-SEQUENCE:(\\d+)").Groups[1].Value);
        var lines = text.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        var complete = lines.Count(l => !l.StartsWith('#'));
        var growing = lines.Skip(Array.FindLastIndex(lines, x => !x.StartsWith('#')) + 1).Count(l => l.StartsWith("#EXT-X-PART:", StringComparison.Ordinal));
        var (msn, wanted) = (sequence + complete, growing + 1);
        var clock = Stopwatch.StartNew();
        var blocked = await http.GetAsync($"/hls/ll/media_0.m3u8?_HLS_msn={msn}&_HLS_part={wanted}");
        var waited = clock.Elapsed;
        Assert.Equal(System.Net.HttpStatusCode.OK, blocked.StatusCode);
        var after = await blocked.Content.ReadAsStringAsync();
        var afterLines = after.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        var afterComplete = afterLines.Count(l => !l.StartsWith('#'));
        var afterSequence = long.Parse(Regex.Match(after, "#EXT-X-MEDIA-SEQUENCE:(\\d+)").Groups[1].Value);
        var afterGrowing = afterLines.Skip(Array.FindLastIndex(afterLines, x => !x.StartsWith('#')) + 1).Count(l => l.StartsWith("#EXT-X-PART:", StringComparison.Ordinal));
        Assert.True(afterSequence + afterComplete > msn || afterGrowing > wanted, $"asked for {msn}.{wanted}, got:\n{after}");
        Assert.InRange(waited.TotalSeconds, 0.1, 6);
        Console.WriteLine($"blocking reload for msn {msn} part {wanted} answered after {waited.TotalMilliseconds:0} ms");

        // A part far in the future is refused after three target durations, not held forever.
        var refused = await http.GetAsync($"/hls/ll/media_0.m3u8?_HLS_msn={msn + 50}&_HLS_part=0");
        Assert.Equal(System.Net.HttpStatusCode.ServiceUnavailable, refused.StatusCode);

        // Players without LL-HLS read the same playlist as a plain one.
        var streams = await Ffmpeg.ProbeAsync($"{server.HttpAddress}hls/ll/media_0.m3u8", TimeSpan.FromSeconds(30), countFrames: false);
        Assert.Contains(streams, s => s.CodecType == "video" && s.Width == 640 && s.Height == 360);
    }

    [Fact]
    public async Task Stopping_the_server_mid_stream_leaves_no_ffmpeg_behind()
    {
        var output = TestPorts.NewTempDirectory("hls");
        var server = await RestreamServer.StartAsync(new Dictionary<string, string?>
        {
            ["Restream:Channels:0:Name"] = "stopme",
            ["Restream:Channels:0:StreamKey"] = "stopme_key_1122334455",
            ["Restream:Transcode:Enabled"] = "true",
            ["Restream:Transcode:OutputDirectory"] = output,
            ["Restream:Transcode:Preset"] = "ultrafast",
        });
        var transcode = server.Services.GetRequiredService<TranscodeService>();
        await using var publisher = Ffmpeg.Publish(server.PublishUrl("stopme_key_1122334455"), 30, size: "640x360", bitrateKbps: 800);
        int? pid = null;
        Assert.True(await TestPorts.EventuallyAsync(() => (pid = transcode.Find("stopme")?.Ffmpeg.ProcessId) is not null, TimeSpan.FromSeconds(15)),
            server.Log.Text);
        Assert.True(ProcessTree.IsRunning(pid!.Value));

        await server.DisposeAsync(); // what SIGTERM / Ctrl+C does: the host stops its services

        Assert.True(await TestPorts.EventuallyAsync(() => !ProcessTree.IsRunning(pid.Value), TimeSpan.FromSeconds(10)), "ffmpeg outlived the server");
    }

    [Fact]
    public async Task An_audio_only_stream_is_relayed_and_the_log_says_why_it_gets_no_ladder()
    {
        var output = TestPorts.NewTempDirectory("hls-radio");
        await using var server = await RestreamServer.StartAsync(new Dictionary<string, string?>
        {
            ["Restream:Channels:0:Name"] = "radio",
            ["Restream:Channels:0:StreamKey"] = "radio_key_1029384756",
            ["Restream:Transcode:Enabled"] = "true",
            ["Restream:Transcode:OutputDirectory"] = output,
        });
        var transcode = server.Services.GetRequiredService<TranscodeService>();
        await using (var publisher = Ffmpeg.Publish(server.PublishUrl("radio_key_1029384756"), 12,
            outputOptions: ["-vn", "-af", "arealtime"])) // audio alone is not paced by -re: the filter keeps it live
        {
            var warning = "[transcode radio] no HLS/DASH yet";
            Assert.True(await TestPorts.EventuallyAsync(() => server.Log.Text.Contains(warning, StringComparison.Ordinal), TimeSpan.FromSeconds(10), 200),
                $"no word on the missing ladder:\n{server.Log.Text}");
            Assert.Contains("an audio-only stream gets no ladder", server.Log.Text);
            Assert.Single(server.Log.Lines, line => line.Contains(warning, StringComparison.Ordinal)); // said once, not every 100 ms
            Assert.Null(transcode.Find("radio")); // no ffmpeg started on an impossible ladder
            Assert.Equal(0, server.Streams.Find("radio")?.Media?.Width);
            Assert.True(server.Streams.Find("radio")?.FramesIn > 0, "the stream itself is live");
        }
    }

    [Fact]
    public async Task Recording_on_request_writes_the_source_to_a_playable_mp4()
    {
        var output = TestPorts.NewTempDirectory("rec");
        await using var server = await RestreamServer.StartAsync(new Dictionary<string, string?>
        {
            ["Restream:Channels:0:Name"] = "rec",
            ["Restream:Channels:0:StreamKey"] = "rec_key_0987654321",
            ["Restream:Transcode:OutputDirectory"] = Path.Combine(output, "hls"),
        });
        using var http = server.Http();
        Assert.Equal(System.Net.HttpStatusCode.NotFound, (await http.PostAsync("/api/v1/streams/rec/recording", null)).StatusCode);
        await using (var publisher = Ffmpeg.Publish(server.PublishUrl("rec_key_0987654321"), 10, size: "640x360", bitrateKbps: 800))
        {
            Assert.True(await TestPorts.EventuallyAsync(() => server.Streams.Find("rec") is { FramesIn: > 30 }, TimeSpan.FromSeconds(10)));
            Assert.Equal(System.Net.HttpStatusCode.Created, (await http.PostAsync("/api/v1/streams/rec/recording", null)).StatusCode);
            await Task.Delay(4000);
            Assert.Equal(System.Net.HttpStatusCode.NoContent, (await http.DeleteAsync("/api/v1/streams/rec/recording")).StatusCode);
            Assert.Equal(0, await publisher.WaitAsync(TimeSpan.FromSeconds(30)));
        }

        var file = Assert.Single(Directory.GetFiles(Path.Combine(output, "recordings"), "rec-*.mp4"));
        var streams = await Ffmpeg.ProbeAsync(file, TimeSpan.FromSeconds(30));
        var video = Assert.Single(streams, s => s.CodecType == "video");
        Assert.Equal(("h264", 640, 360), (video.CodecName, video.Width, video.Height));
        Assert.InRange(video.Frames, 2 * Ffmpeg.Fps, 7 * Ffmpeg.Fps); // about the 4 s asked for (from a keyframe)
        Assert.Contains(streams, s => s.CodecType == "audio" && s.CodecName == "aac");
        var listing = await http.GetStringAsync("/api/v1/recordings");
        Assert.Contains(Path.GetFileName(file), listing);
    }
}
