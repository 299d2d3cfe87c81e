using System.Buffers;
using System.IO.Pipelines;
using System.Net.Sockets;
using System.Threading.Tasks.Sources;

namespace Restream.Ingest.Rtmp;

/// <summary>
/// Reads a plain TCP connection on a thread of its own, the way an event loop would: wait for data
/// with <c>poll(2)</c> (which honours <c>SO_RCVLOWAT</c>, see <see cref="MergedRead"/>), take it with
/// one non-blocking <c>recv</c>, and hand it to the reader on that same thread. The reader's code (the
/// session, the hub, the direct sends to every destination) then runs on the receiving thread until it
/// asks for more, so a publisher's frame costs one wake-up and two system calls: no epoll thread, no
/// thread-pool hop, no socket-engine bookkeeping per read.
/// <para>
/// A read that comes from another thread (the reader awaited something else meanwhile, such as the
/// publish webhook) is handed to the receiving thread, and the reader continues there once data has
/// arrived. The socket is never registered with the runtime's epoll loop for reading, so incoming
/// bytes wake only this thread.
/// </para>
/// <para>
/// Cancellation of a read shuts the socket down for receiving (the session ends anyway), which wakes
/// a waiting poll at once. <see cref="CancelPendingRead"/> is not supported: nothing here needs it.
/// </para>
/// </summary>
internal sealed class SocketThreadReader : PipeReader, IValueTaskSource<ReadResult>
{
    private const int MinimumRead = 16 * 1024;

    private readonly Socket _socket;
    private readonly SafeSocketHandle _handle; // taken once: Socket.SafeHandle writes to the handle each time it is read
    private readonly SemaphoreSlim _handoff = new(0);
    private ManualResetValueTaskSourceCore<ReadResult> _pending; // continuations run on the receiving thread
    private CancellationToken _pendingToken;
    private CancellationToken _registeredToken;
    private CancellationTokenRegistration _registration;
    private byte[] _buffer;
    private int _start; // unconsumed bytes are [_start, _end)
    private int _end;
    private ReadOnlySequence<byte> _returned;
    private bool _examinedAll;
    private bool _drained = true; // the last recv emptied the socket: wait before reading again
    private bool _eof;
    private volatile bool _completed;
    private Thread? _thread;
    private int _threadId;

    public SocketThreadReader(Socket socket, int bufferSize = 64 * 1024)
    {
        _socket = socket;
        _handle = socket.SafeHandle;
        _buffer = new byte[Math.Max(bufferSize, 2 * MinimumRead)];
    }

    /// <summary>The receiving thread, once a read has needed it.</summary>
    internal Thread? ReceiveThread => _thread;

    public override ValueTask<ReadResult> ReadAsync(CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(_completed, this);
        if ((_end > _start && !_examinedAll) || _eof)
        {
            return new ValueTask<ReadResult>(Result());
        }

        Watch(cancellationToken);
        if (Environment.CurrentManagedThreadId == _threadId)
        {
            Fill(cancellationToken); // blocks this thread until data comes: it is what the thread is for
            return new ValueTask<ReadResult>(Result());
        }

        _pending.Reset();
        _pendingToken = cancellationToken;
        EnsureThread();
        _handoff.Release();
        return new ValueTask<ReadResult>(this, _pending.Version);
    }

    public override bool TryRead(out ReadResult result)
    {
        ObjectDisposedException.ThrowIf(_completed, this);
        if ((_end > _start && !_examinedAll) || _eof)
        {
            result = Result();
            return true;
        }

        result = default;
        return false;
    }

    public override void AdvanceTo(SequencePosition consumed) => AdvanceTo(consumed, consumed);

    public override void AdvanceTo(SequencePosition consumed, SequencePosition examined)
    {
        int consumedAt, examinedAt;
        if (ReferenceEquals(consumed.GetObject(), _buffer) && ReferenceEquals(examined.GetObject(), _buffer))
        {
            // The sequence is one segment over _buffer: a position's integer is its index in the array.
            consumedAt = consumed.GetInteger();
            examinedAt = examined.GetInteger();
        }
        else
        {
            consumedAt = _start + (int)_returned.Slice(0, consumed).Length;
            examinedAt = _start + (int)_returned.Slice(0, examined).Length;
        }

        if (consumedAt < _start || consumedAt > _end || examinedAt < consumedAt || examinedAt > _end)
        {
            throw new ArgumentOutOfRangeException(nameof(consumed), "a position outside the buffer last read");
        }

        _examinedAll = examinedAt >= _end;
        _start = consumedAt;
        if (_start == _end)
        {
            _start = _end = 0;
        }

        _returned = default;
    }

    public override void CancelPendingRead() =>
        throw new NotSupportedException("cancel the read's token instead: it shuts the connection down for reading");

    public override void Complete(Exception? exception = null)
    {
        if (_completed)
        {
            return;
        }

        _completed = true;
        _registration.Dispose();
        _handoff.Release(); // a thread waiting for work exits; one in poll wakes when the socket closes
    }

    private ReadResult Result()
    {
        _returned = new ReadOnlySequence<byte>(_buffer, _start, _end - _start);
        return new ReadResult(_returned, isCanceled: false, isCompleted: _eof);
    }

    /// <summary>
    /// The longest a wait for data may last before we take whatever is there, even below the
    /// socket's receive low-water mark: with merged reads on, a small frame (a tiny P-frame of a
    /// still picture) is not left waiting for the bytes of the next one. Infinite by default. After
    /// a wait that timed out on an empty socket (the publisher paused) the next wait is unbounded.
    /// </summary>
    public TimeSpan WaitLimit { get; set; } = Timeout.InfiniteTimeSpan;

    /// <summary>
    /// Asked each time the thread is about to wait for data (see <see cref="IReadPacer"/>): it may
    /// send what was read, and bound the wait. Set it from the reading thread.
    /// </summary>
    public IReadPacer? Pacer { get; set; }

    /// <summary>Receives at least one byte (or the end of the stream) into the buffer.</summary>
    private void Fill(CancellationToken cancellationToken)
    {
        MakeRoom();
        var bounded = true;
        while (true)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var timedOut = false;
            if (_drained)
            {
                var limit = bounded ? WaitLimit : Timeout.InfiniteTimeSpan;
                var timeout = limit == Timeout.InfiniteTimeSpan ? -1 : Math.Max(1, limit.TotalMilliseconds);
                var waitMark = 0; // a low-water mark for this wait only; 0: the pacer's own
                var hold = false; // a bounded hold, slept through without a mark (Linux)
                if (Pacer is { } pacer)
                {
                    var now = ArrivalPlanner.Now;
                    var wakeBy = pacer.BeforeWait(now, out var planned);
                    var hasBound = !double.IsPositiveInfinity(wakeBy);
                    if (hasBound)
                    {
                        timeout = timeout < 0 ? wakeBy - now : Math.Min(timeout, wakeBy - now);
                    }

                    // A hold needs a time to end; a byte is already the mark when reads are not merged.
                    // On Linux a hold ignores data without a mark (UnixSockets.Hold): no mark to raise
                    // before it and put back after it, two system calls fewer per hold.
                    hold = planned == WaitMark.Hold && hasBound && !PromptReads && OperatingSystem.IsLinux();
                    waitMark = planned switch
                    {
                        _ when hold => 0,
                        WaitMark.Hold when hasBound => HoldMark,
                        WaitMark.AnyByte when pacer.Mark > 1 => 1,
                        WaitMark.Audio when hasBound && pacer.AudioMark < pacer.Mark => pacer.AudioMark,
                        _ => 0,
                    };
                }

                // The socket keeps a wait's own mark until a wait wants another one: audio waits and
                // plain merged waits alternate (a hold leaves the mark as it is), and each change is a
                // system call.
                var wanted = hold ? 0 : PromptReads ? 1 : waitMark > 0 ? waitMark : _ownMark > 0 ? Pacer?.Mark ?? 1 : 0;
                if (wanted > 0 && wanted != _ownMark)
                {
                    SetMark(wanted);
                    _ownMark = PromptReads ? 1 : waitMark > 0 ? waitMark : 0; // 0: back at the pacer's own mark, MergedRead's to change again
                }

                // poll(2) counts whole milliseconds: round up, so a wait never ends just before it is due.
                var milliseconds = timeout < 0 ? -1 : (int)Math.Min(int.MaxValue / 1000, Math.Max(1, Math.Ceiling(timeout)));
                timedOut = hold ? !SleepThroughHold(milliseconds) : !WaitReadable(milliseconds);

                cancellationToken.ThrowIfCancellationRequested();
            }

            var room = _buffer.Length - _end;
            var received = Receive(_buffer.AsSpan(_end));
            if (received < 0)
            {
                if (timedOut)
                {
                    EmptyTimeouts++;
                }

                _drained = true;
                bounded = !timedOut; // nothing at all came within the limit: wait for the next byte, however long
                continue;
            }

            var piece = received > 0 && received <= PartialMessage;
            if (piece && (timedOut || PromptReads))
            {
                received += AfterPartialMessage(received, room, stalled: timedOut);
            }

            if (received > 0 && _promptForStalls)
            {
                NoteStalledPublisher(piece);
            }

            if (received > 0 && timedOut && PromptReads)
            {
                _ownMark = 0; // bytes waited although any byte should wake us: the mark was changed under us, set it again
            }

            _drained = received < room;
            _examinedAll = false;
            if (received == 0)
            {
                cancellationToken.ThrowIfCancellationRequested(); // the end we caused by shutting reading down
                _eof = true;
            }

            _end += received;
            return;
        }
    }

    /// <summary>
    /// At most this many bytes found by a wait that timed out are a piece of a message (a chunk's
    /// header) that sat below the low-water mark: no media frame is this small.
    /// </summary>
    private const int PartialMessage = 32;

    /// <summary>How many stalled pieces within <see cref="StallWindow"/> show a publisher that waits for our acknowledgements.</summary>
    private const int StallsToPrompt = 3;

    private static readonly TimeSpan StallWindow = TimeSpan.FromSeconds(10);

    /// <summary>Reads over which a publisher read promptly for its stalls is judged again (see <see cref="NoteStalledPublisher"/>).</summary>
    private const int PromptWindow = 256;

    /// <summary>
    /// Fewer pieces of a message than this within <see cref="PromptWindow"/> reads show a publisher
    /// that sends whole messages. One that waits for our acknowledgements sends a chunk's header
    /// alone for most messages (FFmpeg: ~535 in 10 s, for ~770 messages).
    /// </summary>
    private const int PiecesToStayPrompt = PromptWindow / 16;

    private int _stalls;
    private long _firstStall;
    private volatile bool _promptReads;
    private bool _promptForStalls; // prompt because of stalls of its own (not the pacer's reason): judged again
    private int _promptWindowReads;
    private int _promptWindowPieces;

    /// <summary>
    /// Every byte wakes the reader, whatever the pacer plans: the publisher holds back what it has
    /// to send until we acknowledge what it sent (Nagle's algorithm, as FFmpeg's own RTMP client
    /// does unless told <c>-tcp_nodelay 1</c>), so bytes left below the low-water mark would stall it,
    /// its next frames with them, for as long as the wait lasts. Set once the reader has seen it, and
    /// cleared again when such a publisher turns out to send whole messages after all (see
    /// <see cref="NoteStalledPublisher"/>).
    /// </summary>
    public bool PromptReads => _promptReads;

    /// <summary>Reads promptly from now on, for a reason of the pacer's (see <see cref="PromptReads"/>): for good.</summary>
    internal void ReadPromptly()
    {
        _promptForStalls = false;
        _promptReads = true;
    }

    private volatile int _promptReadsEnded;

    /// <summary>How many times a publisher read promptly for its stalls went back to merged reads (read from any thread).</summary>
    internal int PromptReadsEnded => _promptReadsEnded;

    /// <summary>
    /// Judges a publisher read promptly for its stalls again, read by read. Three stalls within
    /// <see cref="StallWindow"/> can also come from a publisher that sends whole messages: packet loss
    /// or a congested link leaves the tail of a message behind, alone, more than once. Read promptly
    /// it would cost the server a wake-up per piece of every message for as long as it publishes.
    /// So a window of <see cref="PromptWindow"/> reads with fewer than <see cref="PiecesToStayPrompt"/>
    /// pieces of a message (<paramref name="piece"/>) ends prompt reads: the next wait sets the pacer's
    /// own mark again, and three more stalls would switch the publisher back.
    /// </summary>
    private void NoteStalledPublisher(bool piece)
    {
        _promptWindowPieces += piece ? 1 : 0;
        if (++_promptWindowReads < PromptWindow)
        {
            return;
        }

        if (_promptWindowPieces < PiecesToStayPrompt)
        {
            _promptForStalls = false;
            _promptReads = false;
            _stalls = 0;
            _promptReadsEnded++; // this thread alone writes it
        }

        (_promptWindowReads, _promptWindowPieces) = (0, 0);
    }

    /// <summary>
    /// Times the reader gave its CPU up to a publisher read promptly that had sent a piece of a message
    /// and nothing after it (see <see cref="AfterPartialMessage"/>).
    /// </summary>
    internal int PartialYields { get; private set; }

    /// <summary>Waits that ended by their time limit and found nothing to read: timers that woke the thread for nothing.</summary>
    internal int EmptyTimeouts { get; private set; }

    /// <summary>
    /// A receive found only a piece of a message, after a wait that timed out (<paramref name="stalled"/>:
    /// the piece sat below the mark) or from a publisher read promptly. The rest is most likely held back
    /// by a publisher that waits for our acknowledgement, which the receive that took the piece has just
    /// sent; on loopback the rest comes back within that receive. Takes it with one more non-blocking
    /// receive instead of a wait (the bytes added). A stall is counted, and the reader reads promptly
    /// from the third within <see cref="StallWindow"/>.
    /// <para>
    /// From a publisher read promptly, the rest is often not written yet: a publisher on this machine
    /// that wrote a chunk's header loses its CPU to our wake-up before it writes the body (the
    /// scheduler runs the woken reader where the writer ran). Waiting then costs a second
    /// sleep and wake-up for the same message; instead the reader gives its CPU up once
    /// (<see cref="Thread.Yield"/>), the publisher writes the body, which our acknowledgement lets
    /// through at once, and one more receive takes it. Measured with <c>ffmpeg -re</c> on this VM:
    /// 180 waits a second became 61 and the receive thread's CPU fell by a fifth
    /// (<c>bench/README.md</c>). With a publisher elsewhere the yield finds nothing to run and costs
    /// one system call.
    /// </para>
    /// </summary>
    private int AfterPartialMessage(int received, int room, bool stalled)
    {
        if (stalled && !PromptReads)
        {
            var now = System.Diagnostics.Stopwatch.GetTimestamp();
            if (_stalls == 0 || System.Diagnostics.Stopwatch.GetElapsedTime(_firstStall, now) > StallWindow)
            {
                (_stalls, _firstStall) = (0, now);
            }

            if (++_stalls >= StallsToPrompt)
            {
                (_promptWindowReads, _promptWindowPieces) = (0, 0);
                _promptForStalls = true;
                _promptReads = true;
            }
        }

        var more = Receive(_buffer.AsSpan(_end + received, room - received));
        if (more < 0 && PromptReads)
        {
            PartialYields++;
            Thread.Yield();
            more = Receive(_buffer.AsSpan(_end + received, room - received));
        }

        return Math.Max(more, 0);
    }

    /// <summary>Waits for data (honouring the low-water mark): false when the wait timed out.</summary>
    private bool WaitReadable(int milliseconds) =>
        OperatingSystem.IsLinux() ? UnixSockets.WaitReadable(_handle, milliseconds) : _socket.Poll(milliseconds < 0 ? -1 : milliseconds * 1000, SelectMode.SelectRead);

    /// <summary>A hold: data waits in the kernel; only the connection's end or failure ends it early (false when it ran its time).</summary>
    private bool SleepThroughHold(int milliseconds) =>
        OperatingSystem.IsLinux() ? UnixSockets.Hold(_handle, milliseconds) : WaitReadable(milliseconds);

    /// <summary>One non-blocking receive: the bytes read (0 at the end), or -1 when nothing is there yet.</summary>
    private int Receive(Span<byte> buffer)
    {
        if (OperatingSystem.IsLinux())
        {
            return UnixSockets.Receive(_handle, buffer);
        }

        var received = _socket.Receive(buffer, SocketFlags.None, out var error);
        return error switch
        {
            SocketError.Success => received,
            SocketError.WouldBlock => -1,
            _ => throw new IOException($"the connection is closed ({error})", new SocketException((int)error)),
        };
    }

    /// <summary>
    /// The receive low-water mark while a pacer holds frames in the kernel, where a hold cannot ignore
    /// data without one (not Linux, see <see cref="UnixSockets.Hold"/>): above what a live encoder sends
    /// in a few milliseconds (a frame larger than this simply wakes the reader).
    /// </summary>
    private const int HoldMark = 1024 * 1024;

    /// <summary>
    /// The low-water mark a wait set and left on the socket (0: the socket has the pacer's own,
    /// <see cref="IReadPacer.Mark"/>, which <see cref="MergedRead"/> sets). A receive does not look at
    /// the mark (it never blocks), so only the next wait needs the right one.
    /// </summary>
    private int _ownMark;

    /// <summary>How many times the reader changed the socket's low-water mark (each a system call).</summary>
    internal int MarkChanges { get; private set; }

    private void SetMark(int mark)
    {
        MarkChanges++;
        try
        {
            if (OperatingSystem.IsLinux())
            {
                UnixSockets.SetReceiveLowWater(_handle, mark);
            }
            else
            {
                _socket.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReceiveLowWater, mark);
            }
        }
        catch (SocketException)
        {
            // The connection is going away; the next receive says so.
        }
    }

    /// <summary>Moves unconsumed bytes to the front, or grows the buffer, so a read can take at least <see cref="MinimumRead"/>.</summary>
    private void MakeRoom()
    {
        if (_buffer.Length - _end >= MinimumRead)
        {
            return;
        }

        var length = _end - _start;
        var target = length + MinimumRead > _buffer.Length ? new byte[Math.Max(_buffer.Length * 2, length + MinimumRead)] : _buffer;
        Buffer.BlockCopy(_buffer, _start, target, 0, length);
        _buffer = target;
        _start = 0;
        _end = length;
    }

    /// <summary>Shuts reading down when the token of the current read is canceled (registered once per token).</summary>
    private void Watch(CancellationToken cancellationToken)
    {
        if (!cancellationToken.CanBeCanceled || cancellationToken == _registeredToken)
        {
            return;
        }

        _registration.Dispose();
        _registeredToken = cancellationToken;
        _registration = cancellationToken.UnsafeRegister(static state => ((SocketThreadReader)state!).Interrupt(), this);
    }

    private void Interrupt()
    {
        try
        {
            _socket.Shutdown(SocketShutdown.Receive);
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
        {
            // Already closed: nothing is waiting.
        }
    }

    private void EnsureThread()
    {
        if (_thread is not null)
        {
            return;
        }

        _thread = new Thread(static state => ((SocketThreadReader)state!).Run(), maxStackSize: 1024 * 1024)
        {
            IsBackground = true,
            Name = "RTMP receive",
        };
        _thread.Start(this);
        _threadId = _thread.ManagedThreadId;
    }

    private void Run()
    {
        WakeProfile.StartThread();
        while (true)
        {
            _handoff.Wait();
            if (_completed)
            {
                return;
            }

            try
            {
                Fill(_pendingToken);
            }
            catch (Exception e)
            {
                _pending.SetException(e);
                continue;
            }

            _pending.SetResult(Result()); // the reader continues here, on this thread
        }
    }

    ReadResult IValueTaskSource<ReadResult>.GetResult(short token) => _pending.GetResult(token);

    ValueTaskSourceStatus IValueTaskSource<ReadResult>.GetStatus(short token) => _pending.GetStatus(token);

    void IValueTaskSource<ReadResult>.OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags) =>
        _pending.OnCompleted(continuation, state, token, flags);
}

/// <summary>Paces a <see cref="SocketThreadReader"/>: see <see cref="ArrivalPlanner"/>.</summary>
internal interface IReadPacer
{
    /// <summary>
    /// The reader is about to wait, at <paramref name="now"/> (<see cref="ArrivalPlanner.Now"/>): send what must go now, and say when the wait must end at the latest (infinity for no
    /// bound) and what wakes the reader meanwhile (<paramref name="mark"/>).
    /// </summary>
    double BeforeWait(double now, out WaitMark mark);

    /// <summary>The socket's receive low-water mark when nothing is held (see <see cref="MergedRead"/>).</summary>
    int Mark { get; }

    /// <summary>The low-water mark for <see cref="WaitMark.Audio"/>: about the smallest audio frame of late.</summary>
    int AudioMark { get; }
}
