using BenchmarkDotNet.Attributes;
using Restream.Ingest.Hub;
using Restream.Media;
using Restream.Media.Rtmp;

namespace Restream.Bench;

/// <summary>
/// The hot path of the relay without sockets: one frame in, chunked once, handed to N subscribers,
/// each of which dequeues it, takes the shared chunked bytes and releases it. Run with the memory
/// diagnoser: steady state should allocate nothing per frame.
/// </summary>
[MemoryDiagnoser]
public class FanOutBenchmarks
{
    private StreamHub _hub = null!;
    private FrameQueue[] _queues = [];
    private byte[] _body = [];
    private uint _timestamp;

    [Params(1, 4, 16)]
    public int Destinations { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _hub = new StreamHub("c", "bench", "-", TimeProvider.System);
        _queues = [.. Enumerable.Range(0, Destinations).Select(_ => _hub.Subscribe())];
        _body = new byte[12_500]; // one frame of a 3 Mb/s 30 fps feed
        _body[0] = 0x27;
        _body[1] = 1;
        Publish(0x17);
        Drain();
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        foreach (var queue in _queues)
        {
            _hub.Unsubscribe(queue);
        }

        _hub.End();
    }

    private void Publish(byte first)
    {
        var buffer = MediaBuffers.Pool.Rent(_body.Length);
        _body.CopyTo(buffer, 0);
        buffer[0] = first;
        _hub.Publish(MediaFrame.Create(MediaKind.Video, _timestamp += 33, buffer, _body.Length));
    }

    private int Drain()
    {
        var bytes = 0;
        foreach (var queue in _queues)
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
        // A keyframe every 60 frames keeps the GOP cache bounded, as a live stream does.
        Publish(_timestamp % (60 * 33) == 0 ? (byte)0x17 : (byte)0x27);
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
public class LaneFanOutBenchmarks
{
    private StreamHub _hub = null!;
    private FrameQueue[] _queues = [];
    private ChunkTaker[] _writers = [];
    private byte[] _body = [];
    private uint _timestamp;

    [Params(1, 4, 16)]
    public int Destinations { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _hub = new StreamHub("c", "bench", "-", TimeProvider.System) { DeferWakes = true };
        _queues = [.. Enumerable.Range(0, Destinations).Select(_ => _hub.Subscribe())];
        _writers = [.. _queues.Select(_ => new ChunkTaker())];
        for (var i = 0; i < _queues.Length; i++)
        {
            _queues[i].SetLaneWriter(_writers[i]);
            _ = _queues[i].WaitToReadAsync(lane: true); // waits in the lane from now on: the writer takes every read
        }

        _body = new byte[12_500]; // one frame of a 3 Mb/s 30 fps feed
        _body[0] = 0x27;
        _body[1] = 1;
        PublishAndFlush(0x17);
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        foreach (var queue in _queues)
        {
            _hub.Unsubscribe(queue);
        }

        _hub.End();
    }

    private void PublishAndFlush(byte first)
    {
        var buffer = MediaBuffers.Pool.Rent(_body.Length);
        _body.CopyTo(buffer, 0);
        buffer[0] = first;
        _hub.Publish(MediaFrame.Create(MediaKind.Video, _timestamp += 33, buffer, _body.Length));
        _hub.FlushWakes();
    }

    [Benchmark(Description = "publish one frame, flush the read to every destination in the lane, chunk once")]
    public long PublishThroughTheLane()
    {
        PublishAndFlush(_timestamp % (60 * 33) == 0 ? (byte)0x17 : (byte)0x27);
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
