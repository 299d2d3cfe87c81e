using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using Restream.Ingest.Rtmp;

namespace Restream.IntegrationTests;

/// <summary>Merged reads on a real loopback TCP connection: the kernel's receive low-water mark.</summary>
public sealed class MergedReadTests
{
    [Theory]
    [InlineData(375_000, 10, true, 3750)]      // 3 Mb/s: 10 ms of it
    [InlineData(375_000, 0, true, 1)]          // off
    [InlineData(16_000, 10, false, 1)]         // audio only: every frame is small, none waits
    [InlineData(50_000_000, 10, true, MergedRead.MaxMark)]
    public void The_mark_is_the_window_s_worth_of_the_stream(double bytesPerSecond, int windowMs, bool hasVideo, int expected) =>
        Assert.Equal(expected, MergedRead.MarkFor(bytesPerSecond, TimeSpan.FromMilliseconds(windowMs), hasVideo));

    [Fact]
    public async Task Small_writes_wait_below_the_mark_until_a_pause_lowers_it()
    {
        using var listener = new Socket(SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        listener.Listen();
        using var publisher = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        await publisher.ConnectAsync(listener.LocalEndPoint!);
        using var ingest = await listener.AcceptAsync();

        var merged = new MergedRead(ingest, TimeSpan.FromMilliseconds(10));
        var t0 = Stopwatch.GetTimestamp();
        merged.Tune(0, t0, TimeSpan.Zero, hasVideo: true, TimeProvider.System);
        merged.Tune(375_000, t0 + Stopwatch.Frequency, TimeSpan.FromMilliseconds(5), hasVideo: true, TimeProvider.System);
        Assert.Equal(3750, merged.Mark);
        Assert.Equal(3750, (int)ingest.GetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReceiveLowWater)!);

        var buffer = new byte[65536];
        var receive = ingest.ReceiveAsync(buffer.AsMemory()).AsTask();
        await publisher.SendAsync(new byte[400]); // an audio frame
        await Task.WhenAny(receive, Task.Delay(300));
        Assert.False(receive.IsCompleted, "400 bytes below a 3750-byte mark woke the reader");

        await publisher.SendAsync(new byte[12_000]); // the next video frame: both are read at once
        Assert.Equal(12_400, await ReceiveAllAsync(ingest, receive, buffer, 12_400));

        // The publisher pauses with an audio frame waiting below the mark: the next tick takes it.
        receive = ingest.ReceiveAsync(buffer.AsMemory()).AsTask();
        await publisher.SendAsync(new byte[400]);
        await Task.WhenAny(receive, Task.Delay(300));
        Assert.False(receive.IsCompleted);
        merged.Tune(375_400, t0 + 2 * Stopwatch.Frequency, TimeSpan.FromSeconds(1), hasVideo: true, TimeProvider.System);
        Assert.Equal(1, merged.Mark);
        Assert.Equal(400, await receive.WaitAsync(TimeSpan.FromSeconds(5)));

        merged.Reset();
        Assert.Equal(1, (int)ingest.GetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReceiveLowWater)!);
    }

    private static async Task<int> ReceiveAllAsync(Socket socket, Task<int> first, byte[] buffer, int want)
    {
        var total = await first.WaitAsync(TimeSpan.FromSeconds(5));
        while (total < want)
        {
            var n = await socket.ReceiveAsync(buffer.AsMemory()).AsTask().WaitAsync(TimeSpan.FromSeconds(5));
            Assert.True(n > 0);
            total += n;
        }

        return total;
    }
}
