using BenchmarkDotNet.Attributes;
using Restream.Ingest.Hub;
using Restream.Media;
using Restream.Media.Rtmp;

namespace Restream.Bench;

/// <summary>A hub with N subscribers and a 12.5 kB video frame to publish (one frame of a 3 Mb/s 30 fps feed).</summary>
public abstract class HubBenchmarks
{
    private byte[] _body = [];
    private uint _timestamp;

    protected StreamHub Hub { get; private set; } = null!;

    protected FrameQueue[] Queues { get; private set; } = [];

    [Params(1, 4, 16)]
    public int Destinations { get; set; }

    /// <summary>A keyframe every 60 frames keeps the GOP cache bounded, as a live stream does.</summary>
    protected byte NextFirstByte => _timestamp % (60 * 33) == 0 ? (byte)0x17 : (byte)0x27;

    protected void SetUpHub(bool deferWakes)
    {
        Hub = new StreamHub("c", "bench", "-", TimeProvider.System) { DeferWakes = deferWakes };
        Queues = [.. Enumerable.Range(0, Destinations).Select(_ => Hub.Subscribe())];
        _body = new byte[12_500];
        _body[0] = 0x27;
        _body[1] = 1;
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        foreach (var queue in Queues)
        {
            Hub.Unsubscribe(queue);
        }

        Hub.End();
    }

    protected void Publish(byte first)
    {
        var buffer = MediaBuffers.Pool.Rent(_body.Length);
        _body.CopyTo(buffer, 0);
        buffer[0] = first;
        Hub.Publish(MediaFrame.Create(MediaKind.Video, _timestamp += 33, buffer, _body.Length));
    }
}

/// <summary>
/// The hot path of the relay without sockets: one frame in, chunked once, handed to N subscribers,
/// each of which dequeues it, takes the shared chunked bytes and releases it. Run with the memory
/// diagnoser: steady state should allocate nothing per frame.
/// </summary>
[MemoryDiagnoser]
public class FanOutBenchmarks : HubBenchmarks
{
    [GlobalSetup]
    public void Setup()
    {
        SetUpHub(deferWakes: false);
        Publish(0x17);
        Drain();
    }

    private int Drain()
    {
        var bytes = 0;
        foreach (var queue in Queues)
        {
            while (queue.TryDequeue(out var frame))
            {
                bytes += frame.GetChunked(4096, 1, out _).Length;
                frame.Release();
            }
        }

        return bytes;
    }

    [Benchmark(Description = "publish one frame, fan out, chunk once, release")]
    public int PublishAndFanOut()
    {
        Publish(NextFirstByte);
        return Drain();
    }
}

/// <summary>
/// The relay's own fan-out since the eighteenth session, without sockets: a hub that flushes once per
/// read (as the ingest does with merged reads) and N destinations waiting in the lane, whose writers
/// take the read's shared chunked bytes (where the real one hands them to <c>sendmsg</c>). No queue,
/// no reference per destination. Steady state should allocate nothing per frame.
/// </summary>
[MemoryDiagnoser]
public class LaneFanOutBenchmarks : HubBenchmarks
{
    private ChunkTaker[] _writers = [];

    [GlobalSetup]
    public void Setup()
    {
        SetUpHub(deferWakes: true);
        _writers = [.. Queues.Select(_ => new ChunkTaker())];
        for (var i = 0; i < Queues.Length; i++)
        {
            Queues[i].SetLaneWriter(_writers[i]);
            _ = Queues[i].WaitToReadAsync(lane: true); // waits in the lane from now on: the writer takes every read
        }

        Publish(0x17);
        Hub.FlushWakes();
    }

    [Benchmark(Description = "publish one frame, flush the read to every destination in the lane, chunk once")]
    public long PublishThroughTheLane()
    {
        Publish(NextFirstByte);
        Hub.FlushWakes();
        return _writers[^1].Bytes;
    }

    /// <summary>Stands in for a destination's socket: takes each frame's shared chunked bytes.</summary>
    private sealed class ChunkTaker : FrameQueue.LaneWriter
    {
        public long Bytes { get; private set; }

        public override bool TryWrite(ReadOnlySpan<MediaFrame> frames, out int taken)
        {
            foreach (var frame in frames)
            {
                Bytes += frame.GetChunked(4096, 1, out _).Length;
            }

            taken = frames.Length;
            return true;
        }
    }
}

/// <summary>Parsing a captured ffmpeg publish session (chunks → messages).</summary>
[MemoryDiagnoser]
public class ChunkParseBenchmarks
{
    private byte[] _stream = [];

    [GlobalSetup]
    public void Setup()
    {
        // 200 video messages of 12.5 kB at chunk size 4096, as an encoder sends them.
        var writer = new System.Buffers.ArrayBufferWriter<byte>();
        var body = new byte[12_500];
        for (var i = 0; i < 200; i++)
        {
            ChunkStreamWriter.WriteMessage(writer, 4096, 6, RtmpMessageType.Video, (uint)(i * 33), 1, body);
        }

        _stream = writer.WrittenSpan.ToArray();
    }

    [Benchmark(Description = "parse 200 chunked 12.5 kB messages")]
    public int Parse()
    {
        using var reader = new ChunkStreamReader();
        reader.SetChunkSize(4096);
        var sequence = new System.Buffers.SequenceReader<byte>(new System.Buffers.ReadOnlySequence<byte>(_stream));
        var count = 0;
        while (reader.TryReadMessage(ref sequence, out var message))
        {
            message.Dispose();
            count++;
        }

        return count;
    }
}

/// <summary>
/// The send path on a real loopback socket: one audio and one video frame (3 Mb/s 720p30 sizes)
/// written through <see cref="Restream.Ingest.Rtmp.RtmpConnection"/> as two sends, or merged into
/// one gathering write. A thread reads and discards what arrives. Steady state should allocate nothing.
/// </summary>
[MemoryDiagnoser]
public class SendBenchmarks
{
    private System.Net.Sockets.Socket _reader = null!;
    private Restream.Ingest.Rtmp.RtmpConnection _connection = null!;
    private Thread _drain = null!;
    private List<MediaFrame> _frames = [];
    private volatile bool _stop;

    [GlobalSetup]
    public void Setup()
    {
        using var listener = new System.Net.Sockets.Socket(System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Tcp);
        listener.Bind(new System.Net.IPEndPoint(System.Net.IPAddress.Loopback, 0));
        listener.Listen();
        var sender = new System.Net.Sockets.Socket(System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Tcp) { NoDelay = true };
        sender.Connect(listener.LocalEndPoint!);
        _reader = listener.Accept();
        _drain = new Thread(() =>
        {
            var buffer = new byte[1 << 20];
            while (!_stop && _reader.Receive(buffer) > 0)
            {
            }
        }) { IsBackground = true };
        _drain.Start();
        _connection = new Restream.Ingest.Rtmp.RtmpConnection(new System.Net.Sockets.NetworkStream(sender, ownsSocket: true), "bench");
        _connection.SetOutChunkSizeAsync(4096, CancellationToken.None).AsTask().GetAwaiter().GetResult();
        var video = new byte[12_500];
        video[0] = 0x27;
        video[1] = 1;
        var audio = new byte[380];
        audio[0] = 0xAF;
        audio[1] = 1;
        _frames = [MediaFrame.Copy(MediaKind.Audio, 0, audio), MediaFrame.Copy(MediaKind.Video, 0, video)];
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _stop = true;
        _connection.DisposeAsync().AsTask().GetAwaiter().GetResult();
        _drain.Join();
        _reader.Dispose();
    }

    [Benchmark(Baseline = true, Description = "audio + video, one send each")]
    public void TwoSends()
    {
        Wait(_connection.SendFrameAsync(_frames[0], 1, CancellationToken.None));
        Wait(_connection.SendFrameAsync(_frames[1], 1, CancellationToken.None));
    }

    [Benchmark(Description = "audio + video, one merged write")]
    public void OneMergedWrite() => Wait(_connection.SendFramesAsync(_frames, 1, CancellationToken.None));

    private static void Wait(ValueTask send)
    {
        if (!send.IsCompletedSuccessfully)
        {
            send.AsTask().GetAwaiter().GetResult();
        }
    }
}
