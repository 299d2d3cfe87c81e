using System.Threading.Tasks.Sources;
using Restream.Media;

namespace Restream.Ingest.Hub;

/// <summary>
/// The bounded queue between a stream and one subscriber (a destination, a player). The producer
/// never waits: when the subscriber falls behind past the limit, the queue drops its backlog and
/// then everything up to the next keyframe, so the subscriber resumes on a decodable picture.
/// Sequence headers and metadata are never dropped. One consumer; waiting does not allocate.
/// The consumer's continuation runs on the thread that wakes it (the publisher's, after the hub
/// has let go of its lock): like an event loop, a frame is sent to every destination whose socket
/// can take it without a thread hop; a destination that cannot take it returns at once.
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
                wake = true;
            }
        }

        return wake;
    }

    /// <summary>
    /// Takes what is queued on the producer's thread while the reader waits (see <see cref="SetDirectConsumer"/>).
    /// </summary>
    internal interface IDirectConsumer
    {
        /// <summary>
        /// Called on the producer's thread while the reader waits and frames are queued: take them and
        /// send them now. True when that is done and the reader may go on waiting; false to wake the
        /// reader instead (it declined, or the send could not finish at once and the reader must see to it).
        /// </summary>
        bool TryTakeNow(FrameQueue queue);
    }

    private volatile IDirectConsumer? _direct;

    /// <summary>
    /// While the reader waits, the producer hands new frames to <paramref name="consumer"/> on its own
    /// thread instead of resuming the reader: the same work without the reader's continuation, its
    /// second look at the queue and its going back to wait. Null to stop.
    /// </summary>
    internal void SetDirectConsumer(IDirectConsumer? consumer) => _direct = consumer;

    /// <summary>Wakes the waiting reader (its continuation runs here, on this thread), or lets the direct consumer take the frames.</summary>
    internal void Wake()
    {
        // Only one thread at a time gets here for a waiting reader: the one whose enqueue (or
        // completion) cleared _waiting. So the direct consumer never runs beside the reader.
        if (_direct is { } direct && direct.TryTakeNow(this))
        {
            lock (_gate)
            {
                if (_items.Count == 0 && !_completed)
                {
                    _waiting = true; // still waiting: the next frame comes this way again
                    return;
                }
            }
        }

        _signal.SetResult(true);
    }

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
    public ValueTask<bool> WaitToReadAsync()
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
