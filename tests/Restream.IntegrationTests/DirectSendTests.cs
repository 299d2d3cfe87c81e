using System.Net.Sockets;
using Restream.IntegrationTests.Infrastructure;
using Restream.Ingest.Rtmp;
using Restream.Media;

namespace Restream.IntegrationTests;

/// <summary>
/// The relay's send path on a real loopback TCP connection: frames go straight to <c>sendmsg</c>
/// (Linux), and what a full socket cannot take waits in the pipe, in order, with nothing lost.
/// </summary>
public sealed class DirectSendTests : IAsyncLifetime
{
    private LoopbackPair _pair = null!;
    private Socket _receiver = null!;
    private Socket _sender = null!;

    public async Task InitializeAsync()
    {
        _pair = await LoopbackPair.OpenAsync(new Socket(SocketType.Stream, ProtocolType.Tcp) { ReceiveBufferSize = 4096 });
        (_receiver, _sender) = (_pair.Client, _pair.Server);
        _sender.SendBufferSize = 4096; // small buffers: a big batch fills the socket part way
    }

    public Task DisposeAsync()
    {
        _pair.Dispose();
        return Task.CompletedTask;
    }

    [Fact]
    public async Task Frames_reach_the_peer_whole_and_in_order_when_the_socket_takes_only_part()
    {
        await using var connection = new RtmpConnection(new NetworkStream(_sender, ownsSocket: false), "test");
        var frames = new List<MediaFrame>
        {
            Frame(MediaKind.Audio, 10, 300, 1),
            Frame(MediaKind.Video, 33, 400_000, 2), // far more than both socket buffers hold
            Frame(MediaKind.Audio, 31, 280, 3),
            Frame(MediaKind.Video, 66, 150_000, 4),
        };
        var single = Frame(MediaKind.Video, 100, 120_000, 5);
        try
        {
            var expected = frames.Append(single).SelectMany(f => f.GetChunked(connection.OutChunkSize, 1, out _).ToArray()).ToArray();
            var sending = connection.SendFramesAsync(frames, 1, CancellationToken.None);
            Assert.False(sending.IsCompleted, "the socket could not have taken 550 kB at once");
            var reading = ReadAsync(expected.Length);
            await sending;
            await connection.SendFrameAsync(single, 1, CancellationToken.None); // after a partial send: through the pipe, in order
            var received = await reading.WaitAsync(TimeSpan.FromSeconds(10));
            Assert.Equal(expected.Length, received.Length);
            Assert.True(expected.AsSpan().SequenceEqual(received), "the bytes differ from the chunked frames");
            Assert.Equal(expected.Length, connection.BytesSent);
        }
        finally
        {
            frames.ForEach(f => f.Release());
            single.Release();
        }
    }

    [Fact]
    public async Task A_write_on_the_publishers_thread_declines_while_another_is_unfinished()
    {
        await using var connection = new RtmpConnection(new NetworkStream(_sender, ownsSocket: false), "test");
        MediaFrame[] big = [Frame(MediaKind.Video, 0, 300_000, 1), Frame(MediaKind.Audio, 10, 300, 2)];
        MediaFrame[] next = [Frame(MediaKind.Video, 33, 2_000, 3)];
        try
        {
            var expected = big.Concat(next).SelectMany(f => f.GetChunked(connection.OutChunkSize, 1, out _).ToArray()).ToArray();
            Assert.True(connection.TrySendFramesNow(big, 1, CancellationToken.None, out var total, out var sending));
            Assert.Equal(big.Sum(f => f.GetChunked(connection.OutChunkSize, 1, out _).Length), total);
            Assert.False(sending.IsCompleted, "the socket could not have taken 300 kB at once");

            // The rest of the first write still goes out through the pipe: nothing may pass it.
            Assert.False(connection.TrySendFramesNow(next, 1, CancellationToken.None, out _, out _));
            var reading = ReadAsync(expected.Length);
            await sending;
            Assert.True(connection.TrySendFramesNow(next, 1, CancellationToken.None, out _, out var after));
            await after;
            var received = await reading.WaitAsync(TimeSpan.FromSeconds(10));
            Assert.True(expected.AsSpan().SequenceEqual(received), "the bytes differ from the chunked frames, in order");
        }
        finally
        {
            Array.ForEach(big, f => f.Release());
            Array.ForEach(next, f => f.Release());
        }
    }

    [Fact]
    public async Task A_closed_peer_is_an_IOException_not_a_crash()
    {
        await using var connection = new RtmpConnection(new NetworkStream(_sender, ownsSocket: false), "test");
        _receiver.Close();
        var frame = Frame(MediaKind.Video, 0, 1000, 1);
        try
        {
            // The first send may still land in the buffer; the peer's reset fails a later one.
            await Assert.ThrowsAsync<IOException>(async () =>
            {
                for (var i = 0; i < 100; i++)
                {
                    await connection.SendFramesAsync([frame, frame], 1, CancellationToken.None);
                    await Task.Delay(10);
                }
            });
        }
        finally
        {
            frame.Release();
        }
    }

    [Fact]
    public async Task Every_way_of_writing_to_a_disposed_connection_says_it_is_disposed()
    {
        var connection = new RtmpConnection(new NetworkStream(_sender, ownsSocket: false), "test");
        await connection.DisposeAsync();
        var frame = Frame(MediaKind.Audio, 10, 300, 1);
        try
        {
            // What a destination's pusher counts as a lost connection (and retries), not as a bug of ours.
            Assert.Throws<ObjectDisposedException>(() => connection.TrySendFramesNow([frame], 1, CancellationToken.None, out _, out _));
            await Assert.ThrowsAsync<ObjectDisposedException>(async () => await connection.SendFrameAsync(frame, 1, CancellationToken.None));
            await Assert.ThrowsAsync<ObjectDisposedException>(async () => await connection.SendFramesAsync([frame, frame], 1, CancellationToken.None));
            await Assert.ThrowsAsync<ObjectDisposedException>(async () => await connection.SendPingAsync(CancellationToken.None));
        }
        finally
        {
            frame.Release();
        }
    }

    private static MediaFrame Frame(MediaKind kind, uint timestamp, int length, byte fill)
    {
        var body = new byte[length];
        body.AsSpan().Fill(fill);
        body[0] = kind == MediaKind.Video ? (byte)0x27 : (byte)0xAF;
        body[1] = 1;
        return MediaFrame.Copy(kind, timestamp, body);
    }

    private async Task<byte[]> ReadAsync(int count)
    {
        var buffer = new byte[count];
        var read = 0;
        while (read < count)
        {
            var n = await _receiver.ReceiveAsync(buffer.AsMemory(read));
            if (n == 0)
            {
                break;
            }

            read += n;
            await Task.Delay(1); // a slow reader: the sender meets a full socket more than once
        }

        return buffer[..read];
    }
}
