using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;
using Restream.Ingest;
using Restream.Ingest.Hub;
using Restream.Media;
using Restream.Relay;
using static Restream.IntegrationTests.Infrastructure.TinyBodies;

namespace Restream.IntegrationTests;

/// <summary>
/// Merged writes in a destination's send loop, driven through a real <see cref="StreamHub"/> and
/// frame queue: audio waits for the next video frame (within the window) and goes out in the same
/// write, in order; video is never held; the end of the stream sends what was held.
/// </summary>
public sealed class MergedWriteTests
{
    [Fact]
    public async Task Audio_goes_out_with_the_next_video_frame_in_one_write_and_in_order()
    {
        var (time, hub, client, sending) = Start(TimeSpan.FromMilliseconds(50), withVideo: true);
        Publish(hub, MediaKind.Video, 0, Keyframe);
        Publish(hub, MediaKind.Audio, 10, Audio);
        time.Advance(TimeSpan.FromMilliseconds(21));
        Publish(hub, MediaKind.Audio, 31, Audio);
        time.Advance(TimeSpan.FromMilliseconds(12));
        Publish(hub, MediaKind.Video, 33, Interframe);
        Assert.Equal(["V0"], client.Batches[^2]);
        Assert.Equal(["A10", "A31", "V33"], client.Batches[^1]);

        hub.End();
        await sending.WaitAsync(TimeSpan.FromSeconds(5));
        Assert.Equal(6, client.Batches.SelectMany(b => b).Count()); // two sequence headers, four frames, each once
    }

    [Fact]
    public async Task Audio_waits_no_longer_than_the_window_when_video_stops()
    {
        var (time, hub, client, sending) = Start(TimeSpan.FromMilliseconds(50), withVideo: true);
        Publish(hub, MediaKind.Video, 0, Keyframe);
        Publish(hub, MediaKind.Audio, 10, Audio);
        time.Advance(TimeSpan.FromMilliseconds(30));
        Publish(hub, MediaKind.Audio, 40, Audio);
        var before = client.Batches.Count;
        time.Advance(TimeSpan.FromMilliseconds(30)); // 60 ms since the first one was held
        Publish(hub, MediaKind.Audio, 70, Audio);
        Assert.Equal(before + 1, client.Batches.Count);
        Assert.Equal(["A10", "A40", "A70"], client.Batches[^1]);

        Publish(hub, MediaKind.Audio, 90, Audio); // held again ...
        hub.End(); // ... and sent when the stream ends
        await sending.WaitAsync(TimeSpan.FromSeconds(5));
        Assert.Equal(["A90"], client.Batches[^1]);
    }

    [Fact]
    public async Task Every_frame_goes_out_alone_without_a_window_or_without_video()
    {
        foreach (var (window, withVideo) in new[] { (TimeSpan.Zero, true), (TimeSpan.FromMilliseconds(50), false) })
        {
            var (time, hub, client, sending) = Start(window, withVideo);
            if (withVideo)
            {
                Publish(hub, MediaKind.Video, 0, Keyframe);
            }

            for (var i = 1; i <= 3; i++)
            {
                time.Advance(TimeSpan.FromMilliseconds(21));
                Publish(hub, MediaKind.Audio, (uint)(21 * i), Audio);
                Assert.Equal([$"A{21 * i}"], client.Batches[^1]);
            }

            hub.End();
            await sending.WaitAsync(TimeSpan.FromSeconds(5));
            // What was queued before the send loop started (the sequence headers) goes out together.
            Assert.Equal(withVideo ? ["VideoHeader", "AudioHeader"] : ["AudioHeader"], client.Batches[0]);
            Assert.All(client.Batches.Skip(1), b => Assert.Single(b));
        }
    }

    [Fact]
    public async Task A_hub_that_wakes_once_per_read_gets_one_write_per_read_and_nothing_held()
    {
        var (time, hub, client, sending) = Start(TimeSpan.FromMilliseconds(50), withVideo: true);
        hub.DeferWakes = true; // as a publisher paced by a latency budget (ArrivalPlanner)
        Publish(hub, MediaKind.Audio, 10, Audio);
        Publish(hub, MediaKind.Video, 33, Keyframe);
        var before = client.Batches.Count;
        hub.FlushWakes(); // the reader took everything one receive brought
        Assert.Equal(before + 1, client.Batches.Count);
        Assert.Equal(["A10", "V33"], client.Batches[^1]);

        time.Advance(TimeSpan.FromMilliseconds(21));
        Publish(hub, MediaKind.Audio, 43, Audio); // an audio frame read alone: not held for video
        hub.FlushWakes();
        Assert.Equal(["A43"], client.Batches[^1]);

        Publish(hub, MediaKind.Audio, 64, Audio);
        hub.End(); // frames queued but not flushed yet still go out, and the loop ends
        await sending.WaitAsync(TimeSpan.FromSeconds(5));
        Assert.Equal(["A64"], client.Batches[^1]);
    }

    [Fact]
    public async Task A_backlog_of_audio_goes_out_in_bounded_writes()
    {
        var (_, hub, client, sending) = Start(TimeSpan.FromMilliseconds(50), withVideo: true);
        Publish(hub, MediaKind.Video, 0, Keyframe);
        var batches = client.Batches.Count;
        for (var i = 1; i <= 200; i++)
        {
            Publish(hub, MediaKind.Audio, (uint)i, Audio); // no time passes: all held, as after a stall
        }

        Assert.Equal(batches + 3, client.Batches.Count);
        Assert.All(client.Batches.Skip(batches), b => Assert.Equal(64, b.Length));
        hub.End();
        await sending.WaitAsync(TimeSpan.FromSeconds(5));
        Assert.Equal(200 - 3 * 64, client.Batches[^1].Length);
    }

    [Fact]
    public async Task With_wakes_per_read_the_publishers_thread_sends_each_read_itself_in_order()
    {
        var (hub, _, client, sending, pusher) = StartDeferred();
        var thread = Environment.CurrentManagedThreadId;
        Publish(hub, MediaKind.Video, 0, Keyframe);
        Publish(hub, MediaKind.Audio, 10, Audio);
        hub.FlushWakes();
        Publish(hub, MediaKind.Video, 33, Interframe);
        hub.FlushWakes();

        Assert.Equal(["V0", "A10"], client.Batches[^2]);
        Assert.Equal(["V33"], client.Batches[^1]);
        Assert.All(client.Threads, t => Assert.Equal(thread, t));
        Assert.True(pusher.DirectWrites >= 2, $"{pusher.DirectWrites} writes made on the publisher's thread, expected both reads'");
        Assert.False(sending.IsCompleted);

        hub.End();
        await sending.WaitAsync(TimeSpan.FromSeconds(5));
        Assert.Equal(5, client.Batches.SelectMany(b => b).Count()); // two sequence headers, three frames, each once
    }

    [Fact]
    public async Task A_direct_send_the_socket_cannot_finish_is_completed_by_the_send_loop_before_anything_after_it()
    {
        var (hub, _, client, sending, _) = StartDeferred();
        var slow = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        client.Next = () => new ValueTask(slow.Task); // the next write waits for room
        Publish(hub, MediaKind.Video, 0, Keyframe);
        hub.FlushWakes();
        Publish(hub, MediaKind.Video, 33, Interframe);
        hub.FlushWakes(); // queued behind the unfinished write, not sent past it
        Assert.Equal(["V0"], client.Batches[^1]);

        slow.SetResult();
        await WaitUntilAsync(() => client.Batches[^1] is ["V33"]);
        Publish(hub, MediaKind.Video, 66, Interframe);
        hub.FlushWakes();
        await WaitUntilAsync(() => client.Batches[^1] is ["V66"]);
        hub.End();
        await sending.WaitAsync(TimeSpan.FromSeconds(5));
        Assert.Equal(["V0", "V33", "V66"], client.Batches.SelectMany(b => b).Where(f => !f.EndsWith("Header", StringComparison.Ordinal)));
    }

    [Fact]
    public async Task A_direct_send_that_fails_ends_the_send_loop_not_the_publisher()
    {
        var (hub, _, client, sending, _) = StartDeferred();
        client.Next = () => throw new IOException("the connection is closed (ConnectionReset)");
        Publish(hub, MediaKind.Video, 0, Keyframe);
        hub.FlushWakes(); // must not throw on the publisher's thread

        var error = await Assert.ThrowsAsync<IOException>(() => sending.WaitAsync(TimeSpan.FromSeconds(5)));
        Assert.Contains("ConnectionReset", error.Message);
        Publish(hub, MediaKind.Video, 33, Interframe); // the stream goes on for everyone else
        hub.FlushWakes();
    }

    [Fact]
    public async Task A_read_longer_than_one_write_goes_out_in_bounded_writes_in_order()
    {
        var (hub, _, client, sending, _) = StartDeferred();
        Publish(hub, MediaKind.Video, 0, Keyframe);
        hub.FlushWakes();

        for (uint t = 1; t <= 70; t++)
        {
            Publish(hub, MediaKind.Audio, t, Audio); // a backlog read at once: more than one write may carry
        }

        hub.FlushWakes();
        await WaitUntilAsync(() => client.Batches.Sum(b => b.Count(f => f.StartsWith('A') && !f.EndsWith("Header", StringComparison.Ordinal))) == 70);
        Assert.All(client.Batches, b => Assert.True(b.Length <= 64, $"a write of {b.Length} frames"));
        Publish(hub, MediaKind.Video, 100, Interframe);
        hub.FlushWakes();
        await WaitUntilAsync(() => client.Batches[^1] is ["V100"]);
        hub.End();
        await sending.WaitAsync(TimeSpan.FromSeconds(5));
        Assert.Equal(["V0", .. Enumerable.Range(1, 70).Select(t => $"A{t}"), "V100"],
            client.Batches.SelectMany(b => b).Where(f => !f.EndsWith("Header", StringComparison.Ordinal)));
    }

    [Fact]
    public async Task The_last_read_before_the_stream_ends_reaches_a_destination_sent_to_by_the_publisher()
    {
        var (hub, _, client, sending, _) = StartDeferred();
        Publish(hub, MediaKind.Video, 0, Keyframe);
        hub.FlushWakes();

        Publish(hub, MediaKind.Video, 33, Interframe); // the publisher leaves before this read is flushed
        hub.End();
        await sending.WaitAsync(TimeSpan.FromSeconds(5));
        Assert.Equal(["V0", "V33"], client.Batches.SelectMany(b => b).Where(f => !f.EndsWith("Header", StringComparison.Ordinal)));
    }

    [Fact]
    public async Task A_destination_that_leaves_while_the_publisher_sends_for_it_does_not_disturb_the_stream()
    {
        var (hub, queue, client, sending, _) = StartDeferred();
        var other = hub.Subscribe();
        Publish(hub, MediaKind.Video, 0, Keyframe);
        hub.FlushWakes();

        hub.Unsubscribe(queue);
        await sending.WaitAsync(TimeSpan.FromSeconds(5));
        var writes = client.Batches.Count;
        Publish(hub, MediaKind.Video, 33, Interframe);
        hub.FlushWakes();
        Assert.Equal(writes, client.Batches.Count);
        Assert.Equal(4, other.Count); // both headers and both frames, for the subscriber that stayed
        hub.End();
    }

    [Fact]
    public async Task Destinations_waiting_in_the_lane_get_each_read_without_their_queues()
    {
        var (hub, first, firstClient, firstSending, _) = StartDeferred();
        var (second, secondClient, secondSending, _) = AddDestination(hub);
        Publish(hub, MediaKind.Video, 0, Keyframe);
        hub.FlushWakes();
        await WaitUntilAsync(() => secondClient.Batches.Count > 0 && secondClient.Batches[^1].Contains("V0"));

        Publish(hub, MediaKind.Video, 33, Interframe);
        Publish(hub, MediaKind.Audio, 40, Audio);
        Assert.Equal(0, first.Count); // the hub holds the read for both, once
        Assert.Equal(0, second.Count);
        hub.FlushWakes();

        Assert.Equal(["V33", "A40"], firstClient.Batches[^1]);
        Assert.Equal(["V33", "A40"], secondClient.Batches[^1]);
        hub.End();
        await Task.WhenAll(firstSending, secondSending).WaitAsync(TimeSpan.FromSeconds(5));
        foreach (var client in new[] { firstClient, secondClient })
        {
            Assert.Equal(["V0", "V33", "A40"], client.Batches.SelectMany(b => b).Where(f => !f.EndsWith("Header", StringComparison.Ordinal)));
        }
    }

    [Fact]
    public async Task A_destination_that_rejoins_the_lane_during_a_read_gets_each_frame_once_in_order()
    {
        var (hub, _, steady, steadySending, _) = StartDeferred();
        var (_, rejoining, rejoiningSending, _) = AddDestination(hub);
        Publish(hub, MediaKind.Video, 0, Keyframe);
        hub.FlushWakes();
        await WaitUntilAsync(() => rejoining.Batches.Count > 0 && rejoining.Batches[^1].Contains("V0"));

        var slow = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        rejoining.Next = () => new ValueTask(slow.Task); // its next write waits for room: it leaves the lane
        Publish(hub, MediaKind.Video, 33, Interframe);
        hub.FlushWakes();

        // One read: the first frame finds it busy (queued for it), the second finds it back in the lane.
        Publish(hub, MediaKind.Video, 66, Interframe);
        slow.SetResult();
        await WaitUntilAsync(() => rejoining.Batches[^1] is ["V66"]);
        await Task.Delay(50); // its send loop goes back to waiting, in the lane
        Publish(hub, MediaKind.Audio, 70, Audio);
        hub.FlushWakes();

        hub.End();
        await Task.WhenAll(steadySending, rejoiningSending).WaitAsync(TimeSpan.FromSeconds(5));
        foreach (var client in new[] { steady, rejoining })
        {
            Assert.Equal(["V0", "V33", "V66", "A70"], client.Batches.SelectMany(b => b).Where(f => !f.EndsWith("Header", StringComparison.Ordinal)));
        }
    }

    private static async Task WaitUntilAsync(Func<bool> condition)
    {
        var deadline = DateTime.UtcNow.AddSeconds(5);
        while (!condition())
        {
            Assert.True(DateTime.UtcNow < deadline, "timed out waiting for the send loop");
            await Task.Delay(10);
        }
    }

    /// <summary>A hub that wakes destinations once per read (as the ingest does with merged reads), and its pusher.</summary>
    private static (StreamHub Hub, FrameQueue Queue, RecordingClient Client, Task Sending, DestinationPusher Pusher) StartDeferred()
    {
        var hub = new StreamHub("c1", "main", "127.0.0.1:1", new FakeTimeProvider()) { DeferWakes = true };
        Publish(hub, MediaKind.Video, 0, VideoHeader);
        Publish(hub, MediaKind.Audio, 0, AudioHeader);
        var (queue, client, sending, pusher) = AddDestination(hub, "d1");
        return (hub, queue, client, sending, pusher);
    }

    /// <summary>A destination of the hub, with its own pusher and client, its send loop started.</summary>
    private static (FrameQueue Queue, RecordingClient Client, Task Sending, DestinationPusher Pusher) AddDestination(StreamHub hub, string id = "d2")
    {
        var pusher = new DestinationPusher(hub, new DestinationConfig(id, $"dest {id}", new Uri("rtmp://127.0.0.1/app"), "key", true),
            new RelayOptions(), null, new FakeTimeProvider(), NullLogger<DestinationPusher>.Instance);
        var client = new RecordingClient();
        var queue = hub.Subscribe();
        return (queue, client, pusher.SendAsync(client, queue, CancellationToken.None), pusher);
    }

    private static (FakeTimeProvider Time, StreamHub Hub, RecordingClient Client, Task Sending) Start(TimeSpan window, bool withVideo)
    {
        var time = new FakeTimeProvider();
        var hub = new StreamHub("c1", "main", "127.0.0.1:1", time);
        if (withVideo)
        {
            Publish(hub, MediaKind.Video, 0, VideoHeader);
        }

        Publish(hub, MediaKind.Audio, 0, AudioHeader);
        var pusher = new DestinationPusher(hub, new DestinationConfig("d1", "dest", new Uri("rtmp://127.0.0.1/app"), "key", true),
            new RelayOptions { AudioMergeWindow = window }, null, time, NullLogger<DestinationPusher>.Instance);
        var client = new RecordingClient();
        var sending = pusher.SendAsync(client, hub.Subscribe(), CancellationToken.None);
        return (time, hub, client, sending);
    }

    private static void Publish(StreamHub hub, MediaKind kind, uint timestamp, byte[] body) =>
        hub.Publish(MediaFrame.Copy(kind, timestamp, body));

    /// <summary>Stands in for the network client: notes which frames went out in which write.</summary>
    private sealed class RecordingClient : IPublishClient
    {
        public List<string[]> Batches { get; } = [];
        public List<int> Threads { get; } = [];
        public long BytesSent { get; private set; }

        /// <summary>How the next write ends (once): by default at once.</summary>
        public Func<ValueTask>? Next { get; set; }

        public ValueTask SendFrameAsync(MediaFrame frame, CancellationToken cancellationToken) => SendFramesAsync([frame], cancellationToken);

        public ValueTask SendFramesAsync(List<MediaFrame> frames, CancellationToken cancellationToken)
        {
            // Sequence headers are noted by kind only: the tests look at the media frames.
            lock (Batches)
            {
                Batches.Add([.. frames.Select(f => f.IsSequenceHeader ? $"{f.Kind}Header" : $"{(f.Kind == MediaKind.Video ? 'V' : 'A')}{f.Timestamp}")]);
                Threads.Add(Environment.CurrentManagedThreadId);
                BytesSent += frames.Sum(f => f.Length);
            }

            var next = Next;
            Next = null;
            return next?.Invoke() ?? ValueTask.CompletedTask;
        }

        public Task ReadUntilClosedAsync(CancellationToken cancellationToken) => Task.Delay(Timeout.Infinite, cancellationToken);
        public Task UnpublishAsync(CancellationToken cancellationToken) => Task.CompletedTask;
        public ValueTask DisposeAsync() => ValueTask.CompletedTask;
    }
}
