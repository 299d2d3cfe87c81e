using System.Threading.Tasks.Sources;
using Restream.Media;

namespace Restream.Ingest.Hub;

/// <summary>
/// The bounded queue between a stream and one subscriber (a destination, a player). The producer
/// never waits: when the subscriber falls behind past the limit, the queue drops its backlog and
/// then everything up to the next keyframe, so the subscriber resumes on a decodable picture.
/// Sequence headers and metadata are never dropped. One consumer; waiting does not allocate.
/// The consumer's continuation runs on the thread that wakes it (the publisher's, after the hub
/// has let go of its lock). A consumer with a <see cref="LaneWriter"/> that waits with nothing
/// held is "in the lane": the hub skips its queue and hands it a read's frames to write on the
/// publisher's thread (<see cref="StreamHub.FlushWakes"/>), like an event loop's write.
/// </summary>
public sealed class FrameQueue : IValueTaskSource<bool>
{
    private readonly object _gate = new();
    private readonly Queue<MediaFrame> _items;
    private readonly int _maxFrames;
    private readonly long _maxBytes;
    private ManualResetValueTaskSourceCore<bool> _signal = new() { RunContinuationsAsynchronously = false };
    private long _bytes;
    private bool _waiting;
    private bool _completed;
    private bool _awaitingKeyframe;
    private volatile bool _inLane;
    private LaneWriter? _writer;

    public FrameQueue(int maxFrames = 2048, long maxBytes = 32 * 1024 * 1024)
    {
        _maxFrames = maxFrames;
        _maxBytes = maxBytes;
        _items = new Queue<MediaFrame>(Math.Min(maxFrames, 256));
    }

    /// <summary>Frames dropped because this subscriber fell behind.</summary>
    public long DroppedFrames { get; private set; }

    /// <summary>How often the backlog was dropped (once per overflow).</summary>
    public long Overflows { get; private set; }

    public int Count
    {
        get
        {
            lock (_gate)
            {
                return _items.Count;
            }
        }
    }

    public bool IsCompleted
    {
        get
        {
            lock (_gate)
            {
                return _completed && _items.Count == 0;
            }
        }
    }

    /// <summary>
    /// Adds a frame; the queue takes over the caller's reference. <paramref name="isBoundary"/> says
    /// the frame starts a decodable run (a video keyframe, or any audio frame of an audio-only stream).
    /// </summary>
    public void Enqueue(MediaFrame frame, bool isBoundary)
    {
        if (EnqueueWithoutWaking(frame, isBoundary))
        {
            Wake();
        }
    }

    /// <summary>Adds a frame; returns true when the reader waits and must be woken with <see cref="Wake"/>.</summary>
    internal bool EnqueueWithoutWaking(MediaFrame frame, bool isBoundary)
    {
        var wake = false;
        lock (_gate)
        {
            if (_completed)
            {
                frame.Release();
                return false;
            }

            var essential = frame.IsSequenceHeader || frame.Kind == MediaKind.Data;
            if (_awaitingKeyframe && !essential)
            {
                if (!isBoundary)
                {
                    DroppedFrames++;
                    frame.Release();
                    return false;
                }

                _awaitingKeyframe = false;
            }

            if (!essential && (_items.Count >= _maxFrames || _bytes + frame.Length > _maxBytes))
            {
                DropBacklog();
                if (!isBoundary)
                {
                    _awaitingKeyframe = true;
                    DroppedFrames++;
                    frame.Release();
                    return false;
                }
            }

            _items.Enqueue(frame);
            _bytes += frame.Length;
            if (_waiting)
            {
                _waiting = false;
                _inLane = false;
                wake = true;
            }
        }

        return wake;
    }

    /// <summary>
    /// Writes frames for a consumer on the producer's thread while the consumer waits in the lane
    /// (see <see cref="SetLaneWriter"/>): one virtual call per read, nothing queued.
    /// </summary>
    internal abstract class LaneWriter
    {
        /// <summary>
        /// Writes <paramref name="frames"/> (audio and video only: data messages go through the queue)
        /// now, in order (the caller keeps its references). True when
        /// all of them were written and the consumer may go on waiting. False when the consumer must be
        /// woken: <paramref name="taken"/> frames were taken (a write the socket could not finish at
        /// once goes on without the caller; a failure takes them all), the rest is queued for the consumer.
        /// </summary>
        public abstract bool TryWrite(ReadOnlySpan<MediaFrame> frames, out int taken);
    }

    /// <summary>
    /// While the consumer waits with nothing held (<see cref="WaitToReadAsync(bool)"/> with the lane),
    /// the hub hands new frames to <paramref name="writer"/> on the producer's thread instead of queueing
    /// them and resuming the consumer: the same work without the queue, the consumer's continuation,
    /// its second look at the queue and its going back to wait. Null to stop.
    /// </summary>
    internal void SetLaneWriter(LaneWriter? writer)
    {
        lock (_gate)
        {
            _writer = writer;
            if (writer is null)
            {
                _inLane = false;
            }
        }
    }

    /// <summary>The consumer waits in the lane: frames may go to <see cref="WriteLane"/> instead of the queue.</summary>
    internal bool InLane => _inLane;

    /// <summary>Which flush of the hub's lane this queue last joined (the hub's own bookkeeping, on the producer's thread).</summary>
    internal int LaneFlush { get; set; }

    /// <summary>
    /// Hands a read's frames to the lane writer of a consumer that waits in the lane; the consumer is
    /// woken only when the writer could not finish them (it then queues the rest) or the queue completed.
    /// </summary>
    internal void WriteLane(ReadOnlySpan<MediaFrame> frames)
    {
        LaneWriter writer;
        lock (_gate)
        {
            if (!_inLane || _writer is null)
            {
                return; // the queue completed since: its consumer is leaving
            }

            // Claim the waiting consumer: nobody else wakes it while we write (see Wake).
            _inLane = false;
            _waiting = false;
            writer = _writer;
        }

        var written = writer.TryWrite(frames, out var taken);
        lock (_gate)
        {
            if (written && _items.Count == 0 && !_completed)
            {
                _waiting = true;
                _inLane = true; // still waiting: the next read comes this way again
                return;
            }

            for (var i = taken; i < frames.Length && !_completed; i++)
            {
                _items.Enqueue(frames[i].AddRef());
                _bytes += frames[i].Length;
            }
        }

        Wake();
    }

    /// <summary>
    /// Wakes the waiting reader (its continuation runs here, on this thread). Only the thread that took
    /// the reader out of waiting (an enqueue, a completion, or a lane write that claimed it) calls this,
    /// once, so the reader never runs beside a lane write.
    /// </summary>
    internal void Wake() => _signal.SetResult(true);

    private void DropBacklog()
    {
        Overflows++;
        var count = _items.Count;
        for (var i = 0; i < count; i++)
        {
            var item = _items.Dequeue();
            if (item.IsSequenceHeader || item.Kind == MediaKind.Data)
            {
                _items.Enqueue(item);
                continue;
            }

            _bytes -= item.Length;
            DroppedFrames++;
            item.Release();
        }
    }

    public bool TryDequeue(out MediaFrame frame)
    {
        lock (_gate)
        {
            if (_items.TryDequeue(out frame!))
            {
                _bytes -= frame.Length;
                return true;
            }

            return false;
        }
    }

    /// <summary>
    /// Moves queued frames to <paramref name="batch"/> under one lock, until it holds
    /// <paramref name="max"/> frames: how many were moved.
    /// </summary>
    public int DequeueInto(List<MediaFrame> batch, int max)
    {
        lock (_gate)
        {
            var moved = 0;
            while (batch.Count < max && _items.TryDequeue(out var frame))
            {
                _bytes -= frame.Length;
                batch.Add(frame);
                moved++;
            }

            return moved;
        }
    }

    /// <summary>Completes when a frame is available (true) or the queue was completed and is empty (false).</summary>
    public ValueTask<bool> WaitToReadAsync() => WaitToReadAsync(lane: false);

    /// <summary>
    /// Completes when a frame is available (true) or the queue was completed and is empty (false).
    /// With <paramref name="lane"/>, a consumer that has a lane writer and holds nothing back waits in
    /// the lane: the producer writes new frames through it and wakes the consumer only when needed.
    /// </summary>
    internal ValueTask<bool> WaitToReadAsync(bool lane)
    {
        lock (_gate)
        {
            if (_items.Count > 0)
            {
                return new ValueTask<bool>(true);
            }

            if (_completed)
            {
                return new ValueTask<bool>(false);
            }

            _signal.Reset();
            _waiting = true;
            _inLane = lane && _writer is not null && !_awaitingKeyframe;
            return new ValueTask<bool>(this, _signal.Version);
        }
    }

    /// <summary>No more frames will come; a waiting reader wakes once the queue is empty.</summary>
    public void Complete()
    {
        var wake = false;
        lock (_gate)
        {
            if (_completed)
            {
                return;
            }

            _completed = true;
            _inLane = false;
            if (_waiting)
            {
                _waiting = false;
                wake = true;
            }
        }

        if (wake)
        {
            _signal.SetResult(false);
        }
    }

    /// <summary>Completes the queue and releases whatever it still holds.</summary>
    public void Clear()
    {
        Complete();
        lock (_gate)
        {
            while (_items.TryDequeue(out var frame))
            {
                frame.Release();
            }

            _bytes = 0;
        }
    }

    bool IValueTaskSource<bool>.GetResult(short token)
    {
        _ = _signal.GetResult(token);
        lock (_gate)
        {
            return _items.Count > 0 || !_completed;
        }
    }

    ValueTaskSourceStatus IValueTaskSource<bool>.GetStatus(short token) => _signal.GetStatus(token);

    void IValueTaskSource<bool>.OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags) =>
        _signal.OnCompleted(continuation, state, token, flags);
}
