using System.Buffers;
using System.Buffers.Binary;
using System.Net.Sockets;
using Restream.Ingest.Hub;
using Restream.Ingest.Srt;
using Restream.IntegrationTests.Infrastructure;
using Restream.Media.Amf;
using Restream.Media.Rtmp;
using Restream.Relay;
using Restream.Tests;

namespace Restream.IntegrationTests;

/// <summary>A server with one stream live from real ffmpeg for the whole class, abused from the side.</summary>
public sealed class LiveServerFixture : IAsyncLifetime
{
    public const string Key = "robust_key_13579";

    /// <summary>The key the fuzz test's replays of a captured ffmpeg session publish with.</summary>
    public const string ReplayedKey = "replayed_key_97531";

    public int SrtPort { get; } = TestPorts.GetFreeUdpPort();
    public RestreamServer Server { get; private set; } = null!;
    public ExternalProcess Publisher { get; private set; } = null!;
    public StreamHub Hub { get; private set; } = null!;

    public async Task InitializeAsync()
    {
        Server = await RestreamServer.StartAsync(new Dictionary<string, string?>
        {
            ["Restream:Channels:0:Name"] = "robust",
            ["Restream:Channels:0:StreamKey"] = Key,
            ["Restream:Channels:1:Name"] = "replayed",
            ["Restream:Channels:1:StreamKey"] = ReplayedKey,
            ["Restream:Rtmp:PublishTimeout"] = "00:00:02",
            ["Restream:Srt:Enabled"] = "true",
            ["Restream:Srt:Port"] = SrtPort.ToString(System.Globalization.CultureInfo.InvariantCulture),
            ["Restream:Srt:Address"] = "127.0.0.1",
        });
        Publisher = Ffmpeg.Publish(Server.PublishUrl(Key), 120, size: "640x360", bitrateKbps: 800);
        if (!await TestPorts.EventuallyAsync(() => Server.Streams.Find("robust") is { FramesIn: > 30 }, TimeSpan.FromSeconds(15)))
        {
            throw new InvalidOperationException($"publisher did not go live: {Publisher.Tail()}\n{Server.Log.Text}");
        }

        Hub = Server.Streams.Find("robust")!;
    }

    public async Task DisposeAsync()
    {
        await Publisher.DisposeAsync();
        await Server.DisposeAsync();
    }
}

public sealed class IngestRobustnessTests(LiveServerFixture fixture) : IClassFixture<LiveServerFixture>
{
    private RestreamServer Server => fixture.Server;

    public static TheoryData<string> Abuses => ["garbage", "truncated-handshake", "chunk-size-0", "chunk-size-2^31", "amf-string-too-long", "media-before-publish", "fmt3-first"];

    [Theory]
    [MemberData(nameof(Abuses))]
    public async Task Bad_input_closes_only_that_connection_while_the_live_stream_flows(string abuse)
    {
        var framesBefore = fixture.Hub.FramesIn;
        using var client = new TcpClient();
        await client.ConnectAsync("127.0.0.1", Server.RtmpPort);
        var stream = client.GetStream();
        switch (abuse)
        {
            case "garbage":
                var garbage = new byte[4096];
                new Random(7).NextBytes(garbage);
                garbage[0] = 0x47; // not version 3
                await stream.WriteAsync(garbage);
                break;
            case "truncated-handshake":
                await stream.WriteAsync(new byte[] { 3 }.Concat(new byte[100]).ToArray());
                break;
            case "chunk-size-0":
                await HandshakeAsync(stream);
                await SendAsync(stream, o => ProtocolControl.WriteSetChunkSize(o, 0));
                break;
            case "chunk-size-2^31":
                await HandshakeAsync(stream);
                await SendAsync(stream, o => ProtocolControl.WriteSetChunkSize(o, int.MinValue)); // 0x80000000
                break;
            case "amf-string-too-long":
                await HandshakeAsync(stream);
                // A command whose AMF0 string claims 1000 bytes in a 20-byte message.
                var body = new byte[20];
                body[0] = (byte)Amf0Marker.String;
                BinaryPrimitives.WriteUInt16BigEndian(body.AsSpan(1), 1000);
                "connect"u8.CopyTo(body.AsSpan(3));
                await SendAsync(stream, o => ChunkStreamWriter.WriteMessage(o, 128, 3, RtmpMessageType.CommandAmf0, 0, 0, body));
                break;
            case "media-before-publish":
                await HandshakeAsync(stream);
                await SendAsync(stream, o => ChunkStreamWriter.WriteMessage(o, 128, 6, RtmpMessageType.Video, 0, 1, new byte[] { 0x17, 1, 0, 0, 0 }));
                break;
            case "fmt3-first":
                await HandshakeAsync(stream);
                await stream.WriteAsync(new byte[] { 0xC3, 1, 2, 3 });
                break;
        }

        Assert.True(await ClosedByServerAsync(stream, TimeSpan.FromSeconds(5)), $"{abuse}: the server kept the connection open");
        var framesAfter = fixture.Hub.FramesIn;
        Assert.True(await TestPorts.EventuallyAsync(() => fixture.Hub.FramesIn > framesAfter + 10, TimeSpan.FromSeconds(5)),
            $"{abuse}: the live stream stopped flowing");
        Assert.False(fixture.Hub.Ended);
        Assert.Same(fixture.Hub, Server.Streams.Find("robust"));
        Assert.True(framesAfter >= framesBefore);
    }

    [Fact]
    public async Task Second_publisher_on_a_live_key_is_refused_and_the_first_keeps_going()
    {
        var target = new PublishTarget(new Uri($"rtmp://127.0.0.1:{Server.RtmpPort}/live"), LiveServerFixture.Key);
        var e = await Assert.ThrowsAsync<DestinationRejectedException>(() =>
            RtmpPublishClient.ConnectAsync(target, null, TimeProvider.System, CancellationToken.None));
        Assert.Contains(RtmpStatus.PublishBadName, e.Message);
        var frames = fixture.Hub.FramesIn;
        Assert.True(await TestPorts.EventuallyAsync(() => fixture.Hub.FramesIn > frames + 10, TimeSpan.FromSeconds(5)));
        Assert.Same(fixture.Hub, Server.Streams.Find("robust"));
    }

    [Fact]
    public async Task Wrong_stream_key_gets_BadName_and_is_not_logged()
    {
        const string wrongKey = "not-the-key-24680";
        var target = new PublishTarget(new Uri($"rtmp://127.0.0.1:{Server.RtmpPort}/live"), wrongKey);
        var rejectedBefore = Server.Counters.RejectedKeys;
        var e = await Assert.ThrowsAsync<DestinationRejectedException>(() =>
            RtmpPublishClient.ConnectAsync(target, null, TimeProvider.System, CancellationToken.None));
        Assert.Contains(RtmpStatus.PublishBadName, e.Message);
        Assert.Equal(rejectedBefore + 1, Server.Counters.RejectedKeys);
        Assert.DoesNotContain(wrongKey, Server.Log.Text);
        Assert.DoesNotContain(LiveServerFixture.Key, Server.Log.Text);
    }

    [Fact]
    public async Task Ffmpeg_can_play_the_live_stream_from_ingest()
    {
        // Playing by channel name, as a player or a transcode worker does.
        var url = $"rtmp://127.0.0.1:{Server.RtmpPort}/live/robust";
        var (code, output) = await ExternalProcess.RunAsync("ffmpeg",
            ["-hide_banner", "-nostdin", "-loglevel", "info", "-i", url, "-t", "3", "-f", "null", "-"], TimeSpan.FromSeconds(30));
        Assert.True(code == 0, output);
        Assert.Contains("Video: h264", output);
        Assert.Contains("640x360", output);
        Assert.Contains("Audio: aac", output);
        var frames = System.Text.RegularExpressions.Regex.Matches(output, @"frame=\s*(\d+)");
        Assert.True(frames.Count > 0 && int.Parse(frames[^1].Groups[1].Value) >= 80, output);
    }

    /// <summary>
    /// A real ffmpeg publish session (captured, Restream.Media.Tests/Fixtures), replayed damaged 48 times,
    /// six connections at once: each replay is refused, closed for its damage, or goes live and ends
    /// when we hang up. None of it is an internal error, the live stream keeps flowing, and every
    /// connection is gone afterwards.
    /// </summary>
    [Fact]
    public async Task Damaged_replays_of_a_real_ffmpeg_session_never_disturb_the_live_stream()
    {
        const int handshake = 1 + 2 * RtmpHandshake.PacketSize;
        var session = Rekey(File.ReadAllBytes(Path.Combine(AppContext.BaseDirectory, "Fixtures", "ffmpeg-publish.c2s.bin")), handshake, LiveServerFixture.ReplayedKey);
        var random = new Random(11);
        var internalErrors = Server.Counters.InternalErrors;
        var protocolErrors = Server.Counters.ProtocolErrors;
        var open = Server.Counters.Open;
        var outcomes = new List<string>();
        for (var round = 0; round < 8; round++)
        {
            // The damage goes after the handshake (a damaged handshake has tests of its own), mostly into the first 8 KB.
            var replays = Enumerable.Range(0, 6).Select(_ =>
            {
                var (body, what) = ByteMutator.Mutate(session[handshake..], random);
                return (Bytes: session[..handshake].Concat(body).ToArray(), What: what);
            }).ToList();
            var results = await Task.WhenAll(replays.Select(r => ReplayAsync(r.Bytes)));
            outcomes.AddRange(results);
            Assert.True(Server.Counters.InternalErrors == internalErrors,
                $"round {round}: {string.Join(" | ", replays.Select(r => r.What))}\n{Server.Log.Text}");
        }

        var summary = string.Join(", ", outcomes.GroupBy(o => o).Select(g => $"{g.Key} {g.Count()}"));
        Assert.True(outcomes.Contains("closed by the server") && outcomes.Contains("open until we hung up"), summary);
        Assert.True(Server.Counters.ProtocolErrors > protocolErrors, summary);
        Assert.Contains("[stream live/replayed] publisher", Server.Log.Text); // and some went live
        Assert.DoesNotContain("internal error", Server.Log.Text);

        var frames = fixture.Hub.FramesIn;
        Assert.True(await TestPorts.EventuallyAsync(() => fixture.Hub.FramesIn > frames + 10, TimeSpan.FromSeconds(5)), "the live stream stopped flowing");
        Assert.Same(fixture.Hub, Server.Streams.Find("robust"));
        Assert.True(await TestPorts.EventuallyAsync(() => Server.Counters.Open == open && Server.Streams.Find("replayed") is null, TimeSpan.FromSeconds(10)),
            $"{Server.Counters.Open} connections open, {open} before; {summary}");
    }

    /// <summary>
    /// ffmpeg's MPEG-TS (Restream.Media.Tests/Fixtures/h264-aac.ts) damaged at random and published over
    /// SRT, twelve times: each publisher goes live or is cut off for its damage, none of it is an
    /// internal error, and the live RTMP stream keeps flowing.
    /// </summary>
    [Fact]
    public async Task Damaged_transport_streams_over_SRT_never_disturb_the_live_stream()
    {
        var ts = File.ReadAllBytes(Path.Combine(AppContext.BaseDirectory, "Fixtures", "h264-aac.ts"));
        var random = new Random(23);
        var internalErrors = Server.Counters.InternalErrors;
        for (var i = 0; i < 12; i++)
        {
            var (bytes, what) = ByteMutator.Mutate(ts, random, head: ts.Length);
            await Task.Run(() =>
            {
                var socket = LibSrt.srt_create_socket();
                try
                {
                    LibSrt.SetInt(socket, LibSrt.SrtoTransType, 0); // live
                    LibSrt.SetString(socket, LibSrt.SrtoStreamId, $"publish:{LiveServerFixture.ReplayedKey}");
                    LibSrt.Connect(socket, new System.Net.IPEndPoint(System.Net.IPAddress.Loopback, fixture.SrtPort));
                    for (var offset = 0; offset < bytes.Length; offset += 1316)
                    {
                        LibSrt.Send(socket, bytes.AsSpan(offset, Math.Min(1316, bytes.Length - offset)));
                    }

                    Thread.Sleep(600); // what is sent is delivered within the 200 ms latency: a close drops what is not
                }
                catch (SrtException)
                {
                    // cut off for its damage
                }
                finally
                {
                    LibSrt.srt_close(socket);
                }
            });
            Assert.True(Server.Counters.InternalErrors == internalErrors, $"replay {i} ({what})\n{Server.Log.Text}");
            Assert.True(await TestPorts.EventuallyAsync(() => Server.Streams.Find("replayed") is null, TimeSpan.FromSeconds(10)),
                $"replay {i}: the SRT publisher is still live\n{Server.Log.Text}");
        }

        Assert.True(System.Text.RegularExpressions.Regex.Count(Server.Log.Text, @"\[stream srt/replayed\] SRT publisher \S+ started") == 12, Server.Log.Text);
        Assert.DoesNotContain("internal error", Server.Log.Text);
        var live = fixture.Hub.FramesIn;
        Assert.True(await TestPorts.EventuallyAsync(() => fixture.Hub.FramesIn > live + 10, TimeSpan.FromSeconds(5)), "the live stream stopped flowing");
        Assert.Same(fixture.Hub, Server.Streams.Find("robust"));
    }

    /// <summary>
    /// The captured session (its key is "fixture", too short for a channel) with <paramref name="key"/> in
    /// its publish commands: every message read and chunked again, in order, on its own chunk stream.
    /// </summary>
    private static byte[] Rekey(byte[] capture, int handshake, string key)
    {
        using var reader = new ChunkStreamReader();
        var output = new ArrayBufferWriter<byte>();
        output.Write(capture.AsSpan(0, handshake));
        var chunkSize = 128;
        var input = new SequenceReader<byte>(new ReadOnlySequence<byte>(capture, handshake, capture.Length - handshake));
        while (reader.TryReadMessage(ref input, out var message))
        {
            using (message)
            {
                var body = message.Span.ToArray();
                if (message.TypeId == RtmpMessageType.CommandAmf0 && RtmpCommand.Parse(message.Payload) is { Name: "releaseStream" or "FCPublish" or "publish" } command)
                {
                    var rewritten = new ArrayBufferWriter<byte>();
                    (command with { Arguments = [key, .. command.Arguments.Skip(1)] }).WriteBody(rewritten);
                    body = rewritten.WrittenSpan.ToArray();
                }

                ChunkStreamWriter.WriteMessage(output, chunkSize, message.ChunkStreamId, message.TypeId, message.Timestamp, message.StreamId, body);
                if (message.TypeId == RtmpMessageType.SetChunkSize)
                {
                    chunkSize = (int)ProtocolControl.ReadUInt32Body(body);
                    reader.SetChunkSize((uint)chunkSize);
                }
            }
        }

        return output.WrittenSpan.ToArray();
    }

    /// <summary>Sends a whole session at once, then waits up to 300 ms for the server to close it.</summary>
    private async Task<string> ReplayAsync(byte[] bytes)
    {
        using var client = new TcpClient();
        await client.ConnectAsync("127.0.0.1", Server.RtmpPort);
        var stream = client.GetStream();
        var send = stream.WriteAsync(bytes).AsTask();
        var closed = await ClosedByServerAsync(stream, TimeSpan.FromMilliseconds(300));
        try
        {
            await send;
        }
        catch (IOException)
        {
            // The server closed before taking it all.
        }

        return closed ? "closed by the server" : "open until we hung up";
    }

    private static async Task HandshakeAsync(NetworkStream stream)
    {
        var c0c1 = new byte[1 + RtmpHandshake.PacketSize];
        RtmpHandshake.WriteC0C1(c0c1, 0, digest: false);
        await stream.WriteAsync(c0c1);
        var s0s1s2 = new byte[1 + 2 * RtmpHandshake.PacketSize];
        await stream.ReadExactlyAsync(s0s1s2);
        await stream.WriteAsync(s0s1s2.AsMemory(1, RtmpHandshake.PacketSize));
    }

    private static async Task SendAsync(NetworkStream stream, Action<IBufferWriter<byte>> write)
    {
        var buffer = new ArrayBufferWriter<byte>();
        write(buffer);
        await stream.WriteAsync(buffer.WrittenMemory);
    }

    /// <summary>True when the server closes (EOF or reset) within the timeout; what it sends before is read and dropped.</summary>
    private static async Task<bool> ClosedByServerAsync(NetworkStream stream, TimeSpan timeout)
    {
        using var cts = new CancellationTokenSource(timeout);
        var buffer = new byte[8192];
        try
        {
            while (true)
            {
                if (await stream.ReadAsync(buffer, cts.Token) == 0)
                {
                    return true;
                }
            }
        }
        catch (IOException)
        {
            return true; // reset
        }
        catch (OperationCanceledException)
        {
            return false;
        }
    }
}
