using Restream.Ingest.Hub;
using Restream.Media.Amf;
using Restream.Relay;

namespace Restream.Media.Tests;

/// <summary>The fan-out core: late joiners, bounded queues, GOP drops, reference counts.</summary>
public sealed class StreamHubTests
{
    private static StreamHub NewHub() => new("c1", "main", "127.0.0.1:1", TimeProvider.System);

    private static MediaFrame VideoHeader() => MediaFrame.Copy(MediaKind.Video, 0, [0x17, 0, 0, 0, 0, 1, 0x64, 0, 0x1F, 0xFF, 0xE0, 0]);
    private static MediaFrame AudioHeader() => MediaFrame.Copy(MediaKind.Audio, 0, [0xAF, 0, 0x12, 0x10]);
    private static MediaFrame Key(uint ts) => MediaFrame.Copy(MediaKind.Video, ts, [0x17, 1, 0, 0, 0, 9, 9, 9]);
    private static MediaFrame Inter(uint ts) => MediaFrame.Copy(MediaKind.Video, ts, [0x27, 1, 0, 0, 0, 8, 8]);
    private static MediaFrame Audio(uint ts) => MediaFrame.Copy(MediaKind.Audio, ts, [0xAF, 1, 7, 7]);

    private static List<MediaFrame> Drain(FrameQueue queue)
    {
        var frames = new List<MediaFrame>();
        while (queue.TryDequeue(out var frame))
        {
            frames.Add(frame);
        }

        return frames;
    }

    [Fact]
    public void Frame_kind_flags_come_from_the_FLV_body()
    {
        var header = VideoHeader();
        var key = Key(0);
        var inter = Inter(33);
        Assert.True(header.IsSequenceHeader && header.IsKeyframe);
        Assert.True(key.IsKeyframe && !key.IsSequenceHeader);
        Assert.False(inter.IsKeyframe);
        Assert.True(AudioHeader().IsSequenceHeader);
        foreach (var f in new[] { header, key, inter })
        {
            f.Release();
        }
    }

    [Fact]
    public void Late_subscriber_starts_with_metadata_sequence_headers_and_the_current_gop()
    {
        var hub = NewHub();
        hub.SetMetadata(StreamHub.CreateMetadataFrame(0, new AmfEcmaArray { { "width", 1280.0 } }), new AmfEcmaArray { { "width", 1280.0 } });
        hub.Publish(VideoHeader());
        hub.Publish(AudioHeader());
        hub.Publish(Inter(0)); // before any keyframe: undecodable, never cached
        hub.Publish(Key(33));
        hub.Publish(Audio(40));
        hub.Publish(Inter(66));
        hub.Publish(Key(2000));
        hub.Publish(Inter(2033));
        hub.Publish(Audio(2040));

        var queue = hub.Subscribe();
        var frames = Drain(queue);
        Assert.Equal(
            [(MediaKind.Data, 0u), (MediaKind.Video, 0u), (MediaKind.Audio, 0u), (MediaKind.Video, 2000u), (MediaKind.Video, 2033u), (MediaKind.Audio, 2040u)],
            frames.Select(f => (f.Kind, f.Timestamp)));
        Assert.True(frames[3].IsKeyframe);
        frames.ForEach(f => f.Release());

        hub.Publish(Inter(2066));
        var next = Assert.Single(Drain(queue));
        Assert.Equal(2066u, next.Timestamp);
        next.Release();
        hub.Unsubscribe(queue);
        hub.End();
    }

    [Fact]
    public void A_slow_subscriber_drops_whole_gops_and_resumes_at_a_keyframe_while_a_fast_one_gets_everything()
    {
        var hub = NewHub();
        hub.Publish(VideoHeader());
        var slow = hub.Subscribe(maxFrames: 10);
        var fast = hub.Subscribe(maxFrames: 10_000);
        Drain(slow).ForEach(f => f.Release());
        Drain(fast).ForEach(f => f.Release());

        var published = 0;
        var fastReceived = 0;
        for (var gop = 0; gop < 5; gop++)
        {
            for (var i = 0; i < 8; i++)
            {
                var ts = (uint)(gop * 1000 + i * 33);
                hub.Publish(i == 0 ? Key(ts) : Inter(ts));
                published++;
                var got = Drain(fast);
                fastReceived += got.Count;
                got.ForEach(f => f.Release());
            }
        }

        Assert.Equal(published, fastReceived);
        Assert.Equal(0, fast.DroppedFrames);

        var slowFrames = Drain(slow);
        Assert.True(slow.DroppedFrames > 0);
        Assert.True(slowFrames[0].IsKeyframe, "after a drop the slow subscriber resumes on a keyframe");
        Assert.Equal(published, slowFrames.Count + slow.DroppedFrames);
        // What it kept are whole GOPs: every run starts at a keyframe and timestamps increase.
        Assert.True(slowFrames.Zip(slowFrames.Skip(1)).All(p => p.First.Timestamp < p.Second.Timestamp));
        slowFrames.ForEach(f => f.Release());
        hub.Unsubscribe(slow);
        hub.Unsubscribe(fast);
        hub.End();
    }

    [Fact]
    public void Sequence_headers_are_never_dropped()
    {
        var queue = new FrameQueue(maxFrames: 2);
        queue.Enqueue(Key(0), true);
        queue.Enqueue(Inter(33), false);
        queue.Enqueue(VideoHeader(), false); // over the limit, yet kept
        queue.Enqueue(Inter(66), false); // overflow: backlog dropped, now waits for a keyframe
        queue.Enqueue(Inter(99), false);
        queue.Enqueue(Key(1000), true);
        var frames = Drain(queue);
        Assert.True(frames[0].IsSequenceHeader);
        Assert.Equal(1000u, frames[1].Timestamp);
        Assert.Equal(2, frames.Count);
        frames.ForEach(f => f.Release());
    }

    [Fact]
    public void DequeueInto_moves_frames_in_order_up_to_the_batch_limit_and_frees_their_room()
    {
        // Room for three frames of 8 bytes: a batch taken out makes room for as many new ones.
        var queue = new FrameQueue(maxFrames: 3, maxBytes: 1024);
        queue.Enqueue(Key(0), isBoundary: true);
        queue.Enqueue(Inter(33), isBoundary: false);
        queue.Enqueue(Inter(66), isBoundary: false);
        var batch = new List<MediaFrame>();
        batch.Add(Audio(10)); // a frame held from before stays first

        Assert.Equal(2, queue.DequeueInto(batch, max: 3));
        Assert.Equal(new uint[] { 10, 0, 33 }, batch.Select(f => f.Timestamp));
        Assert.Equal(1, queue.Count);
        Assert.Equal(0, queue.DequeueInto(batch, max: 3)); // the batch is full: nothing moves

        queue.Enqueue(Inter(99), isBoundary: false);
        queue.Enqueue(Inter(133), isBoundary: false);
        Assert.Equal(0, queue.DroppedFrames); // taking two out made room for two more

        var rest = new List<MediaFrame>();
        Assert.Equal(3, queue.DequeueInto(rest, max: 64));
        Assert.Equal(new uint[] { 66, 99, 133 }, rest.Select(f => f.Timestamp));
        Assert.Equal(0, queue.DequeueInto(rest, max: 64));
        foreach (var frame in batch.Concat(rest))
        {
            frame.Release();
        }
    }

    [Fact]
    public async Task Waiting_reader_wakes_for_a_frame_and_for_the_end()
    {
        var queue = new FrameQueue();
        var wait = queue.WaitToReadAsync();
        Assert.False(wait.IsCompleted);
        queue.Enqueue(Key(0), true);
        Assert.True(await wait);
        Assert.True(queue.TryDequeue(out var frame));
        frame.Release();
        var end = queue.WaitToReadAsync();
        queue.Complete();
        Assert.False(await end);
    }

    [Fact]
    public void Every_frame_returns_to_the_pool_when_all_subscribers_are_done()
    {
        var before = MediaFrame.Outstanding;
        var hub = NewHub();
        var a = hub.Subscribe();
        var b = hub.Subscribe();
        hub.Publish(VideoHeader());
        for (var i = 0; i < 100; i++)
        {
            hub.Publish(i % 30 == 0 ? Key((uint)i * 33) : Inter((uint)i * 33));
        }

        Drain(a).ForEach(f => f.Release());
        hub.Unsubscribe(a);
        hub.Unsubscribe(b); // b never read: unsubscribing releases its backlog
        hub.End();
        Assert.Equal(before, MediaFrame.Outstanding);
    }

    [Fact]
    public void Chunked_bytes_are_built_once_and_shared_by_connections_with_the_same_chunk_size()
    {
        var frame = MediaFrame.Copy(MediaKind.Video, 1234, new byte[10_000]);
        var first = frame.GetChunked(4096, 1, out var sharedFirst);
        var second = frame.GetChunked(4096, 1, out var sharedSecond);
        Assert.False(sharedFirst);
        Assert.True(sharedSecond);
        Assert.True(first.Span == second.Span, "the same memory, not a copy");
        var other = frame.GetChunked(128, 1, out var sharedOther);
        Assert.False(sharedOther);
        Assert.NotEqual(first.Length, other.Length);
        frame.Release();
    }

    [Fact]
    public void Metadata_of_a_stream_is_parsed_from_its_sequence_headers()
    {
        var hub = NewHub();
        // A real x264 720p30 SPS inside an AVC sequence header.
        var sps = Convert.FromHexString("6764001FACD9405005BB0110000003001000000303C0F1831960");
        byte[] record = [1, 0x64, 0, 0x1F, 0xFF, 0xE1, 0, (byte)sps.Length, .. sps, 1, 0, 4, 0x68, 0xEB, 0xE3, 0xCB];
        hub.Publish(MediaFrame.Copy(MediaKind.Video, 0, [0x17, 0, 0, 0, 0, .. record]));
        hub.Publish(AudioHeader());
        Assert.Equal(new StreamMediaInfo("H264", 1280, 720, 30.0, "High", "AAC", 44100, 2), hub.Media);
        hub.End();
    }

    [Theory]
    [InlineData(0, 100, 200)]
    [InlineData(1, 200, 400)]
    [InlineData(2, 400, 800)]
    [InlineData(3, 500, 1000)] // capped at 1 s
    [InlineData(30, 500, 1000)]
    public void Backoff_doubles_up_to_the_cap_with_equal_jitter(int attempt, int minMs, int maxMs)
    {
        var initial = TimeSpan.FromMilliseconds(200);
        var max = TimeSpan.FromSeconds(1);
        Assert.Equal(minMs, DestinationPusher.Backoff(attempt, initial, max, 0).TotalMilliseconds);
        Assert.Equal(maxMs, DestinationPusher.Backoff(attempt, initial, max, 1).TotalMilliseconds);
    }

    [Theory]
    [InlineData("rtmp://live.twitch.tv/app", "abc", "rtmp://live.twitch.tv/app", "app", "abc")]
    [InlineData("rtmp://a.rtmp.youtube.com/live2/xyz-key", null, "rtmp://a.rtmp.youtube.com/live2", "live2", "xyz-key")]
    [InlineData("rtmps://dc4-1.rtmp.t.me/s/", "123:abc", "rtmps://dc4-1.rtmp.t.me/s/", "s", "123:abc")]
    [InlineData("rtmp://h/app/inst/key?x=1", null, "rtmp://h/app/inst", "app/inst", "key?x=1")]
    public void Publish_target_splits_server_url_and_stream_key(string url, string? key, string server, string app, string name)
    {
        var target = PublishTarget.From(new Uri(url), key);
        Assert.Equal(new Uri(server), target.ServerUrl);
        Assert.Equal(app, target.App);
        Assert.Equal(name, target.StreamName);
    }
}
