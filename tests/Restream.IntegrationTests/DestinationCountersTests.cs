using Microsoft.Extensions.Logging.Abstractions;
using Restream.IntegrationTests.Infrastructure;
using Restream.Ingest;
using Restream.Ingest.Hub;
using Restream.Media;
using Restream.Relay;
using static Restream.IntegrationTests.Infrastructure.TinyBodies;

namespace Restream.IntegrationTests;

/// <summary>
/// A destination's counters against what the destination really got: our relay pushing over a real
/// RTMP connection to our own ingest, the publisher's thread writing each read itself (the lane),
/// and the destination dropping the connection once.
/// </summary>
public sealed class DestinationCountersTests
{
    [Fact]
    public async Task Frames_counted_as_sent_are_the_frames_the_destination_received_and_the_count_goes_on_after_a_reconnect()
    {
        const string key = "mirror_key_0123456789";
        await using var server = await RestreamServer.StartAsync(new Dictionary<string, string?>
        {
            ["Restream:Channels:0:Name"] = "mirror",
            ["Restream:Channels:0:StreamKey"] = key,
        });
        var hub = new StreamHub("c1", "main", "127.0.0.1:1", TimeProvider.System) { DeferWakes = true }; // wakes per read, as the ingest's
        hub.Publish(MediaFrame.Copy(MediaKind.Video, 0, VideoHeader));
        hub.Publish(MediaFrame.Copy(MediaKind.Audio, 0, AudioHeader));
        var pusher = new DestinationPusher(hub,
            new DestinationConfig("d1", "mirror", new Uri($"rtmp://127.0.0.1:{server.RtmpPort}/live"), key, true),
            new RelayOptions(), null, TimeProvider.System, NullLogger<DestinationPusher>.Instance);
        using var stop = new CancellationTokenSource();
        var running = pusher.RunAsync(stop.Token);
        try
        {
            Assert.True(await TestPorts.EventuallyAsync(() => pusher.State == DestinationState.Live && server.Streams.Find("mirror") is not null, TimeSpan.FromSeconds(10)));
            var first = server.Streams.Find("mirror")!;
            var timestamp = await PublishReadsAsync(hub, 30, 0);
            Assert.True(await TestPorts.EventuallyAsync(() => first.FramesIn == pusher.GetStatus().FramesSent, TimeSpan.FromSeconds(10)),
                $"sent {pusher.GetStatus().FramesSent}, received {first.FramesIn}");
            Assert.True(pusher.DirectWrites >= 20, $"{pusher.DirectWrites} writes on the publisher's thread"); // the lane's path was taken
            var before = pusher.GetStatus();
            Assert.True(before.FramesSent >= 62, $"{before.FramesSent} frames sent"); // two headers and 30 reads of two frames

            first.RequestStop(); // the destination hangs up on us; the pusher comes back by itself
            Assert.True(await TestPorts.EventuallyAsync(() => server.Streams.Find("mirror") is { } again && again != first && pusher.State == DestinationState.Live,
                TimeSpan.FromSeconds(10)));
            var second = server.Streams.Find("mirror")!;
            await PublishReadsAsync(hub, 10, timestamp);
            Assert.True(await TestPorts.EventuallyAsync(() => first.FramesIn + second.FramesIn == pusher.GetStatus().FramesSent, TimeSpan.FromSeconds(10)),
                $"sent {pusher.GetStatus().FramesSent}, received {first.FramesIn} + {second.FramesIn}");
            var after = pusher.GetStatus();
            Assert.True(after.FramesSent >= before.FramesSent + 20 && after.BytesSent > before.BytesSent, "the counters started again from zero");
            Assert.True(after.Reconnects >= 1);
        }
        finally
        {
            hub.End();
            await stop.CancelAsync();
            await running.WaitAsync(TimeSpan.FromSeconds(10));
        }
    }

    /// <summary>
    /// Publishes <paramref name="reads"/> reads of a video frame (a keyframe first) and an audio frame,
    /// each flushed as the ingest does after a read; returns the next timestamp.
    /// </summary>
    private static async Task<uint> PublishReadsAsync(StreamHub hub, int reads, uint timestamp)
    {
        for (var i = 0; i < reads; i++)
        {
            hub.Publish(MediaFrame.Copy(MediaKind.Video, timestamp, i == 0 ? Keyframe : Interframe));
            hub.Publish(MediaFrame.Copy(MediaKind.Audio, timestamp + 10, Audio));
            hub.FlushWakes();
            timestamp += 33;
            await Task.Delay(5);
        }

        return timestamp;
    }
}
