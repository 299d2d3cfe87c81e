using System.Buffers;
using System.Net;
using System.Threading.Channels;
using Restream.Ingest.Srt;
using Restream.Media;
using Restream.Media.Ts;

namespace Restream.Relay;

/// <summary>An outgoing feed to one destination, over RTMP(S) or SRT.</summary>
public interface IPublishClient : IAsyncDisposable
{
    long BytesSent { get; }

    ValueTask SendFrameAsync(MediaFrame frame, CancellationToken cancellationToken);

    /// <summary>Sends several frames in order; a client that can send them with one write does.</summary>
    ValueTask SendFramesAsync(List<MediaFrame> frames, CancellationToken cancellationToken) =>
        SendEachAsync(this, frames, cancellationToken);

    /// <summary>One frame after another (indexed: no enumerator is allocated on the media path).</summary>
    protected static async ValueTask SendEachAsync(IPublishClient client, List<MediaFrame> frames, CancellationToken cancellationToken)
    {
        for (var i = 0; i < frames.Count; i++)
        {
            await client.SendFrameAsync(frames[i], cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>Completes with an exception when the destination goes away.</summary>
    Task ReadUntilClosedAsync(CancellationToken cancellationToken);

    /// <summary>Ends the publish politely once everything queued was sent.</summary>
    Task UnpublishAsync(CancellationToken cancellationToken);

    /// <summary>The link's own figures where the protocol keeps them (SRT); null for RTMP, whose TCP keeps its own counsel.</summary>
    DestinationLinkStats? LinkStats => null;
}

/// <summary>What an outgoing SRT link went through so far: loss seen by the receiver and repaired by us, and what came too late.</summary>
public sealed record DestinationLinkStats(string Protocol, double RttMs, long PacketsSent, long PacketsLost, long PacketsRetransmitted,
    long PacketsDropped, double MbpsSendRate);

/// <summary>
/// A destination's link packets over all its connections (libsrt's totals start again at zero with
/// each one): what Prometheus counters need to keep rising across reconnects.
/// </summary>
public readonly record struct DestinationLinkTotals(long PacketsSent, long PacketsLost, long PacketsRetransmitted, long PacketsDropped)
{
    public static DestinationLinkTotals operator +(DestinationLinkTotals a, DestinationLinkStats? b) => b is null ? a : new(
        a.PacketsSent + b.PacketsSent, a.PacketsLost + b.PacketsLost, a.PacketsRetransmitted + b.PacketsRetransmitted, a.PacketsDropped + b.PacketsDropped);
}

/// <summary>
/// Publishes to an SRT listener (an SRS SRT port, a hardware decoder): frames are muxed to MPEG-TS and
/// sent as 1316-byte live messages. <c>srt://host:port?streamid=…&amp;passphrase=…&amp;pbkeylen=16&amp;latency=200</c>
/// (latency in milliseconds). libsrt's send blocks, so a thread of its own sends; the queue in front
/// of it is bounded, which passes back-pressure to the destination's keyframe-aware frame queue.
/// </summary>
public sealed class SrtPublishClient : IPublishClient
{
    private const int MessageSize = 7 * TsDemuxer.PacketSize;
    private readonly int _socket;
    private readonly TsMuxer _muxer = new();
    private readonly ArrayBufferWriter<byte> _ts = new(64 * 1024);
    private readonly Channel<(byte[] Buffer, int Length)> _outgoing =
        Channel.CreateBounded<(byte[], int)>(new BoundedChannelOptions(256) { SingleReader = true, SingleWriter = true });
    private readonly TaskCompletionSource _closed = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly Thread _sender;
    private long _bytesSent;
    private int _disposed;
    private DestinationLinkStats? _lastStats;
    private long _lastStatsAt;

    private SrtPublishClient(int socket)
    {
        _socket = socket;
        _sender = new Thread(SendLoop) { IsBackground = true, Name = "srt-send" };
        _sender.Start();
    }

    public long BytesSent => Interlocked.Read(ref _bytesSent);

    /// <summary>
    /// The link's figures now, or the last ones taken while it was up: libsrt refuses its statistics
    /// once a connection is broken, so the sender takes a copy at most once a second, and what a
    /// connection did is still there to be added up after it ended.
    /// </summary>
    public DestinationLinkStats? LinkStats => TakeStats() ?? Volatile.Read(ref _lastStats);

    private DestinationLinkStats? TakeStats()
    {
        if (Volatile.Read(ref _disposed) != 0 || LibSrt.Stats(_socket) is not { } s)
        {
            return null;
        }

        var stats = new DestinationLinkStats("srt", s.MsRtt, s.PktSentTotal, s.PktSndLossTotal, s.PktRetransTotal, s.PktSndDropTotal, s.MbpsSendRate);
        Volatile.Write(ref _lastStats, stats);
        return stats;
    }

    public static async Task<SrtPublishClient> ConnectAsync(Uri url, string? key, TimeSpan timeout, CancellationToken cancellationToken)
    {
        LibSrt.Startup();
        var query = System.Web.HttpUtility.ParseQueryString(url.Query);
        var socket = LibSrt.srt_create_socket();
        try
        {
            LibSrt.SetInt(socket, LibSrt.SrtoConnTimeo, (int)timeout.TotalMilliseconds);
            if (int.TryParse(query["latency"], out var latency))
            {
                LibSrt.SetInt(socket, LibSrt.SrtoLatency, latency);
            }

            var streamId = query["streamid"] ?? key;
            if (!string.IsNullOrEmpty(streamId))
            {
                LibSrt.SetString(socket, LibSrt.SrtoStreamId, streamId);
            }

            if (!string.IsNullOrEmpty(query["passphrase"]))
            {
                LibSrt.SetString(socket, LibSrt.SrtoPassphrase, query["passphrase"]!);
                LibSrt.SetInt(socket, LibSrt.SrtoPbKeyLen, int.TryParse(query["pbkeylen"], out var keyLength) ? keyLength : 16);
            }

            var addresses = await Dns.GetHostAddressesAsync(url.Host, System.Net.Sockets.AddressFamily.InterNetwork, cancellationToken).ConfigureAwait(false);
            var endpoint = new IPEndPoint(addresses.FirstOrDefault() ?? throw new IOException($"{url.Host} has no IPv4 address"), url.Port);
            await Task.Run(() => LibSrt.Connect(socket, endpoint), cancellationToken).ConfigureAwait(false);
            return new SrtPublishClient(socket);
        }
        catch (SrtException e)
        {
            LibSrt.srt_close(socket);
            throw new IOException($"SRT connect to {url.Host}:{url.Port} failed: {e.Message}", e);
        }
        catch
        {
            LibSrt.srt_close(socket);
            throw;
        }
    }

    public async ValueTask SendFrameAsync(MediaFrame frame, CancellationToken cancellationToken)
    {
        _muxer.Write(frame, _ts);
        var data = _ts.WrittenMemory;
        while (data.Length > 0)
        {
            var take = Math.Min(MessageSize, data.Length);
            var buffer = MediaBuffers.Pool.Rent(take);
            data.Span[..take].CopyTo(buffer);
            data = data[take..];
            await _outgoing.Writer.WriteAsync((buffer, take), cancellationToken).ConfigureAwait(false);
        }

        _ts.ResetWrittenCount();
        if (_closed.Task.IsFaulted)
        {
            await _closed.Task.ConfigureAwait(false);
        }
    }

    private void SendLoop()
    {
        try
        {
            while (_outgoing.Reader.WaitToReadAsync().AsTask().GetAwaiter().GetResult())
            {
                while (_outgoing.Reader.TryRead(out var item))
                {
                    try
                    {
                        LibSrt.Send(_socket, item.Buffer.AsSpan(0, item.Length));
                        Interlocked.Add(ref _bytesSent, item.Length);
                        if (Environment.TickCount64 - _lastStatsAt >= 1000)
                        {
                            _lastStatsAt = Environment.TickCount64;
                            TakeStats();
                        }
                    }
                    finally
                    {
                        MediaBuffers.Pool.Return(item.Buffer);
                    }
                }
            }

            _closed.TrySetResult();
        }
        catch (SrtException e)
        {
            _closed.TrySetException(new IOException($"SRT destination went away: {e.Message}", e));
            _outgoing.Writer.TryComplete();
            while (_outgoing.Reader.TryRead(out var item))
            {
                MediaBuffers.Pool.Return(item.Buffer);
            }
        }
    }

    public async Task ReadUntilClosedAsync(CancellationToken cancellationToken)
    {
        await _closed.Task.WaitAsync(cancellationToken).ConfigureAwait(false);
        throw new IOException("the SRT destination closed the connection");
    }

    public async Task UnpublishAsync(CancellationToken cancellationToken)
    {
        _outgoing.Writer.TryComplete();
        try
        {
            await _closed.Task.WaitAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
        }

        // Give libsrt a moment to deliver what it holds before the socket closes (live mode has no linger).
        await Task.Delay(300, CancellationToken.None).ConfigureAwait(false);
    }

    public ValueTask DisposeAsync()
    {
        TakeStats(); // the last figures, if libsrt still gives them (none once disposed)
        if (Interlocked.Exchange(ref _disposed, 1) == 0)
        {
            _outgoing.Writer.TryComplete();
            LibSrt.srt_close(_socket);
            _sender.Join(TimeSpan.FromSeconds(2));
        }

        return ValueTask.CompletedTask;
    }
}
