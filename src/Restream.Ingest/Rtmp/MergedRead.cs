using System.Net.Sockets;

namespace Restream.Ingest.Rtmp;

/// <summary>
/// Merged reads for a publisher's socket, done by the kernel: with <c>SO_RCVLOWAT</c> set to a few
/// milliseconds' worth of the stream's own bytes, a small audio frame no longer wakes us by itself;
/// it is read together with the video frame that follows it. One wake-up, one receive and one
/// batch of sends instead of two or three per video frame (SRS calls this "merged read"; nginx-rtmp
/// gets a similar effect on its sends from Nagle's algorithm). Video frames are larger than the mark
/// and are read at once. Data left below the mark (the stream paused) is taken within a watchdog tick.
/// </summary>
public sealed class MergedRead(Socket socket, TimeSpan window)
{
    /// <summary>The largest mark we set: a 64 KiB wait is already ~20 ms of a 25 Mb/s stream.</summary>
    public const int MaxMark = 64 * 1024;

    private long _lastBytes = -1;
    private long _lastAt;
    private bool _unsupported;

    /// <summary>The receive low-water mark in force (1: every byte wakes us).</summary>
    public int Mark { get; private set; } = 1;

    /// <summary>
    /// How long a read may wait below the mark before it takes what is there (four windows; infinite
    /// when every byte wakes us): the bound on how long a small video frame can be held.
    /// </summary>
    public TimeSpan WaitLimit => Mark > 1 ? window * 4 : Timeout.InfiniteTimeSpan;

    /// <summary>
    /// The mark for a stream receiving <paramref name="bytesPerSecond"/>: <paramref name="window"/>'s
    /// worth of it, between 1 and <see cref="MaxMark"/>. 1 when off or for audio-only streams, whose
    /// frames are all small and must not wait for each other.
    /// </summary>
    public static int MarkFor(double bytesPerSecond, TimeSpan window, bool hasVideo)
    {
        if (window <= TimeSpan.Zero || !hasVideo || bytesPerSecond <= 0 || double.IsNaN(bytesPerSecond))
        {
            return 1;
        }

        return (int)Math.Clamp(bytesPerSecond * window.TotalSeconds, 1, MaxMark);
    }

    /// <summary>
    /// Called about once a second while publishing: follows the stream's byte rate, and drops the
    /// mark to 1 when bytes have waited below it for longer than a few windows.
    /// </summary>
    public void Tune(long bytesReceived, long now, TimeSpan sinceLastReceived, bool hasVideo, TimeProvider time)
    {
        if (_unsupported || window <= TimeSpan.Zero)
        {
            return;
        }

        if (_lastBytes < 0)
        {
            (_lastBytes, _lastAt) = (bytesReceived, now);
            return;
        }

        var elapsed = time.GetElapsedTime(_lastAt, now).TotalSeconds;
        var rate = elapsed > 0 ? (bytesReceived - _lastBytes) / elapsed : 0;
        (_lastBytes, _lastAt) = (bytesReceived, now);
        var wanted = MarkFor(rate, window, hasVideo);
        if (sinceLastReceived > window * 4 && socket.Available > 0)
        {
            wanted = 1; // a pause: what is waiting below the mark goes on now
        }

        // Small changes in the rate are not worth a system call.
        if (wanted == Mark || (wanted != 1 && Mark != 1 && Math.Abs(wanted - Mark) < Mark / 4))
        {
            return;
        }

        Set(wanted);
    }

    /// <summary>Back to every byte waking us (the publisher stopped; commands follow).</summary>
    public void Reset()
    {
        if (Mark != 1)
        {
            Set(1);
        }
    }

    private void Set(int mark)
    {
        try
        {
            socket.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReceiveLowWater, mark);
            Mark = mark;
        }
        catch (Exception e) when (e is SocketException or PlatformNotSupportedException or ObjectDisposedException)
        {
            _unsupported = true; // Windows has no SO_RCVLOWAT for TCP; reads are simply not merged
        }
    }
}
