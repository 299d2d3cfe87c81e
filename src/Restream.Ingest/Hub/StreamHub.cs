using System.Buffers;
using Restream.Media;
using Restream.Media.Amf;
using Restream.Media.Codecs;

namespace Restream.Ingest.Hub;

/// <summary>How the publisher's network link is doing (SRT reports it; RTMP over TCP does not).</summary>
public sealed record IngestLinkStats(string Protocol, double RttMs, long PacketsReceived, long PacketsLost, long PacketsRetransmitted,
    long PacketsDropped, double ReceiveRateMbps, double BandwidthMbps);

/// <summary>What the hub knows about a live stream's media, from its sequence headers and metadata.</summary>
public sealed record StreamMediaInfo(
    string? VideoCodec, int Width, int Height, double? FrameRate, string? VideoProfile,
    string? AudioCodec, int SampleRate, int Channels);

/// <summary>
/// One live stream: the publisher's frames in, every subscriber's bounded queue out. It keeps what
/// a late subscriber needs to start cleanly (metadata, sequence headers, the current GOP) and never
/// waits for a subscriber. Publishing and subscribing share one lock so a new subscriber gets the
/// cached start and then every later frame, in order, with nothing missed or doubled.
/// </summary>
public sealed class StreamHub
{
    private readonly object _gate = new();
    private readonly CancellationTokenSource _stopRequested = new();
    private readonly List<MediaFrame> _gop = [];
    private readonly int _maxGopFrames;
    private FrameQueue[] _subscribers = [];
    private List<FrameQueue> _deferred = [];
    private List<FrameQueue>? _spareDeferred = [];
    private LaneBatch _lane = new();
    private LaneBatch? _spareLane = new();
    private int _laneFlush = 1;
    private MediaFrame? _metadata;
    private MediaFrame? _videoHeader;
    private MediaFrame? _audioHeader;
    private bool _gopOverflow;
    private bool _ended;
    private long _framesIn;
    private long _bytesIn;
    private long _videoFrames;

    public StreamHub(string channelId, string name, string publisherRemote, TimeProvider time, int maxGopFrames = 1200)
    {
        ChannelId = channelId;
        Name = name;
        PublisherRemote = publisherRemote;
        StartedAt = time.GetUtcNow();
        _maxGopFrames = maxGopFrames;
    }

    public string ChannelId { get; }
    public string Name { get; }
    public string PublisherRemote { get; }
    public DateTimeOffset StartedAt { get; }
    public long FramesIn => Interlocked.Read(ref _framesIn);
    public long VideoFramesIn => Interlocked.Read(ref _videoFrames);
    public long BytesIn => Interlocked.Read(ref _bytesIn);
    public bool HasVideo => _videoHeader is not null;
    public StreamMediaInfo? Media { get; private set; }
    public AmfObject? Metadata { get; private set; }
    public bool Ended => _ended;

    /// <summary>
    /// When set, subscribers are not woken frame by frame but by <see cref="FlushWakes"/>: the publisher's
    /// reader calls it once it has taken everything one read brought, so each destination sends all
    /// of it in one write (see <see cref="Rtmp.ArrivalPlanner"/>). A subscriber waiting in the lane
    /// (<see cref="FrameQueue.LaneWriter"/>) gets the read's audio and video without its queue: the
    /// hub keeps one reference to each frame for all of them and hands them over at the flush.
    /// </summary>
    public bool DeferWakes { get; set; }

    /// <summary>Reads the publisher's link figures, when its protocol has them.</summary>
    public Func<IngestLinkStats?>? LinkStats { get; set; }
    public int SubscriberCount => _subscribers.Length;

    /// <summary>Cancelled when an operator kicks the stream: the publisher's session closes.</summary>
    public CancellationToken StopRequested => _stopRequested.Token;

    public void RequestStop() => _stopRequested.Cancel();

    /// <summary>Raised once when the publisher has gone.</summary>
    public event Action<StreamHub>? EndedEvent;

    /// <summary>
    /// Takes one frame from the publisher (taking over its reference) and hands it to every subscriber.
    /// </summary>
    public void Publish(MediaFrame frame)
    {
        if (frame.Kind == MediaKind.Data)
        {
            WriteLane(); // what the lane holds goes before it, in order
        }

        Interlocked.Increment(ref _framesIn);
        Interlocked.Add(ref _bytesIn, frame.Length);
        lock (_gate)
        {
            if (_ended)
            {
                frame.Release();
                return;
            }

            if (frame.Kind == MediaKind.Video && !frame.IsSequenceHeader)
            {
                Interlocked.Increment(ref _videoFrames);
            }

            Remember(frame);
            var boundary = frame.IsKeyframe || (frame.Kind == MediaKind.Audio && _videoHeader is null);
            EnqueueAll(frame, boundary);
        }

        frame.Release();
        if (!DeferWakes)
        {
            WakeReaders();
        }
    }

    [ThreadStatic]
    private static List<FrameQueue>? t_toWake;

    /// <summary>
    /// Hands the frame to every subscriber: to its queue, or, for a subscriber waiting in the lane, to
    /// the lane's frames of this flush. Who must be woken is noted for after the lock.
    /// </summary>
    private void EnqueueAll(MediaFrame frame, bool boundary)
    {
        var toWake = DeferWakes ? _deferred : t_toWake ??= [];
        var laneable = DeferWakes && frame.Kind != MediaKind.Data;
        var laned = false;
        foreach (var subscriber in _subscribers)
        {
            if (laneable && subscriber.InLane)
            {
                if (subscriber.LaneFlush != _laneFlush)
                {
                    subscriber.LaneFlush = _laneFlush;
                    _lane.Join(subscriber); // it gets this frame and every later one of the flush
                }

                laned = true;
                continue;
            }

            if (subscriber.EnqueueWithoutWaking(frame.AddRef(), boundary))
            {
                toWake.Add(subscriber);
            }
        }

        if (laned)
        {
            _lane.Add(frame.AddRef());
        }
    }

    /// <summary>Wakes waiting subscribers outside the hub's lock: their send loops run right here.</summary>
    private static void WakeReaders()
    {
        var toWake = t_toWake;
        if (toWake is null || toWake.Count == 0)
        {
            return;
        }

        t_toWake = null; // a woken reader that publishes elsewhere gets a list of its own
        try
        {
            foreach (var queue in toWake)
            {
                queue.Wake();
            }
        }
        finally
        {
            toWake.Clear();
            t_toWake = toWake;
        }
    }

    /// <summary>
    /// Writes the lane's frames for the subscribers waiting in it, then wakes the subscribers that frames
    /// were queued for since the last flush (see <see cref="DeferWakes"/>).
    /// </summary>
    public void FlushWakes()
    {
        WriteLane();
        List<FrameQueue> toWake;
        lock (_gate)
        {
            if (_deferred.Count == 0)
            {
                return;
            }

            toWake = _deferred;
            _deferred = _spareDeferred ?? [];
            _spareDeferred = null;
        }

        try
        {
            foreach (var queue in toWake)
            {
                queue.Wake(); // its send loop runs here
            }
        }
        finally
        {
            toWake.Clear();
            lock (_gate)
            {
                _spareDeferred ??= toWake;
            }
        }
    }

    /// <summary>Hands the lane's frames to the subscribers that joined it, each from where it joined, outside the hub's lock.</summary>
    private void WriteLane()
    {
        LaneBatch lane;
        lock (_gate)
        {
            if (_lane.MemberCount == 0)
            {
                return;
            }

            lane = _lane;
            _lane = _spareLane ?? new LaneBatch();
            _spareLane = null;
            _laneFlush++;
        }

        try
        {
            var frames = lane.Frames.AsSpan(0, lane.FrameCount);
            foreach (var (queue, from) in lane.Members.AsSpan(0, lane.MemberCount))
            {
                queue.WriteLane(frames[from..]);
            }
        }
        finally
        {
            lane.Clear();
            lock (_gate)
            {
                _spareLane ??= lane;
            }
        }
    }

    /// <summary>
    /// One flush's lane: its frames (a reference each) and who joined where. Arrays, not lists: a
    /// list's <c>Clear</c> goes through the untyped <see cref="Array.Clear(Array, int, int)"/>, which reads
    /// the array's type first, a cache miss per flush on the publisher's thread.
    /// </summary>
    private sealed class LaneBatch
    {
        public MediaFrame[] Frames = new MediaFrame[16];
        public (FrameQueue Queue, int From)[] Members = new (FrameQueue, int)[8];
        public int FrameCount;
        public int MemberCount;

        public void Add(MediaFrame frame)
        {
            if (FrameCount == Frames.Length)
            {
                Array.Resize(ref Frames, FrameCount * 2);
            }

            Frames[FrameCount++] = frame;
        }

        public void Join(FrameQueue queue)
        {
            if (MemberCount == Members.Length)
            {
                Array.Resize(ref Members, MemberCount * 2);
            }

            Members[MemberCount++] = (queue, FrameCount);
        }

        /// <summary>Releases the frames and forgets everything.</summary>
        public void Clear()
        {
            var frames = Frames.AsSpan(0, FrameCount);
            foreach (var frame in frames)
            {
                frame.Release();
            }

            frames.Clear();
            Members.AsSpan(0, MemberCount).Clear();
            FrameCount = 0;
            MemberCount = 0;
        }
    }

    /// <summary>Sets the stream's metadata: an <c>onMetaData</c> data message body.</summary>
    public void SetMetadata(MediaFrame frame, AmfObject metadata)
    {
        WriteLane(); // what the lane holds goes before the metadata, in order
        lock (_gate)
        {
            Metadata = metadata;
            Replace(ref _metadata, frame.AddRef());
            EnqueueAll(frame, false);
        }

        frame.Release();
        if (!DeferWakes)
        {
            WakeReaders();
        }
    }

    private void Remember(MediaFrame frame)
    {
        if (frame.IsSequenceHeader)
        {
            if (frame.Kind == MediaKind.Video)
            {
                Replace(ref _videoHeader, frame.AddRef());
            }
            else
            {
                Replace(ref _audioHeader, frame.AddRef());
            }

            UpdateMediaInfo();
            return;
        }

        if (frame.IsKeyframe)
        {
            ClearGop();
            _gopOverflow = false;
        }
        else if (_gop.Count == 0 && HasVideo && frame.Kind == MediaKind.Video)
        {
            return; // no keyframe yet: nothing a new subscriber could decode
        }

        if (_gopOverflow)
        {
            return;
        }

        if (_gop.Count >= _maxGopFrames)
        {
            // A GOP longer than the cache: late subscribers wait for the next keyframe instead.
            ClearGop();
            _gopOverflow = true;
            return;
        }

        if (frame.Kind != MediaKind.Data && (_gop.Count > 0 || frame.IsKeyframe || !HasVideo))
        {
            _gop.Add(frame.AddRef());
        }
    }

    /// <summary>
    /// Adds a subscriber. Its queue first receives metadata, sequence headers and the current GOP
    /// (starting at a keyframe), then every frame published afterwards.
    /// </summary>
    public FrameQueue Subscribe(int maxFrames = 2048, long maxBytes = 32 * 1024 * 1024)
    {
        var queue = new FrameQueue(maxFrames, maxBytes);
        lock (_gate)
        {
            if (_ended)
            {
                queue.Complete();
                return queue;
            }

            if (_metadata is not null)
            {
                queue.Enqueue(_metadata.AddRef(), false);
            }

            if (_videoHeader is not null)
            {
                queue.Enqueue(_videoHeader.AddRef(), false);
            }

            if (_audioHeader is not null)
            {
                queue.Enqueue(_audioHeader.AddRef(), false);
            }

            foreach (var frame in _gop)
            {
                queue.Enqueue(frame.AddRef(), frame.IsKeyframe);
            }

            _subscribers = [.. _subscribers, queue];
        }

        return queue;
    }

    public void Unsubscribe(FrameQueue queue)
    {
        lock (_gate)
        {
            _subscribers = Array.FindAll(_subscribers, q => q != queue);
        }

        queue.Clear();
    }

    /// <summary>Ends the stream: subscribers drain what they have and then see the end.</summary>
    public void End()
    {
        WriteLane(); // the last read reaches the subscribers in the lane before they see the end
        FrameQueue[] subscribers;
        lock (_gate)
        {
            if (_ended)
            {
                return;
            }

            _ended = true;
            subscribers = _subscribers;
            ClearGop();
            Replace(ref _metadata, null);
            Replace(ref _videoHeader, null);
            Replace(ref _audioHeader, null);
        }

        foreach (var subscriber in subscribers)
        {
            subscriber.Complete();
        }

        FlushWakes(); // a subscriber with frames queued but not woken yet would never see the end
        EndedEvent?.Invoke(this);
    }

    private void ClearGop()
    {
        foreach (var frame in _gop)
        {
            frame.Release();
        }

        _gop.Clear();
    }

    private static void Replace(ref MediaFrame? slot, MediaFrame? value)
    {
        slot?.Release();
        slot = value;
    }

    private void UpdateMediaInfo()
    {
        string? videoCodec = null, profile = null, audioCodec = null;
        int width = 0, height = 0, rate = 0, channels = 0;
        double? fps = Metadata?.GetNumber("framerate");
        if (_videoHeader is { } v)
        {
            var body = v.Payload.Span;
            var codec = CodecName(body);
            videoCodec = codec;
            if (codec == "H264" && body.Length > 5)
            {
                try
                {
                    var record = AvcDecoderConfigurationRecord.Parse(body[5..]);
                    if (record.SequenceParameterSets.Count > 0)
                    {
                        var sps = SequenceParameterSet.Parse(record.SequenceParameterSets[0]);
                        width = sps.Width;
                        height = sps.Height;
                        profile = sps.ProfileName;
                        fps ??= sps.FrameRate;
                    }
                }
                catch (FormatException)
                {
                    // A sequence header we cannot read is still forwarded; the info stays empty.
                }
            }
        }

        if (_audioHeader is { } a)
        {
            var body = a.Payload.Span;
            if (body.Length > 2 && body[0] >> 4 == Restream.Media.Flv.FlvMedia.AacSoundFormat)
            {
                try
                {
                    var asc = AudioSpecificConfig.Parse(body[2..]);
                    audioCodec = "AAC";
                    rate = asc.SampleRate;
                    channels = asc.Channels;
                }
                catch (FormatException)
                {
                    audioCodec = "AAC";
                }
            }
        }

        Media = new StreamMediaInfo(videoCodec, width, height, fps, profile, audioCodec, rate, channels);
    }

    private static string CodecName(ReadOnlySpan<byte> body)
    {
        if ((body[0] & 0x80) != 0 && body.Length >= 5)
        {
            return System.Text.Encoding.ASCII.GetString(body.Slice(1, 4)) switch
            {
                "hvc1" => "HEVC",
                "av01" => "AV1",
                "vp09" => "VP9",
                "avc1" => "H264",
                var other => other,
            };
        }

        return (body[0] & 0x0F) switch
        {
            7 => "H264",
            12 => "HEVC",
            var id => $"codec {id}",
        };
    }

    /// <summary>Builds an <c>onMetaData</c> data body from the publisher's <c>@setDataFrame</c> arguments.</summary>
    public static MediaFrame CreateMetadataFrame(uint timestamp, AmfObject metadata)
    {
        var body = new ArrayBufferWriter<byte>(512);
        AmfWriter.WriteString(body, "onMetaData");
        AmfWriter.WriteObject(body, metadata);
        return MediaFrame.Copy(MediaKind.Data, timestamp, body.WrittenSpan);
    }
}
