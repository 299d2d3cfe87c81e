using System.Buffers;
using System.IO.Pipelines;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using Restream.Media;
using Restream.Media.Rtmp;

namespace Restream.Ingest.Rtmp;

/// <summary>
/// One RTMP byte stream (a socket, or TLS over one) read and written through System.IO.Pipelines.
/// It owns the chunk stream state both ways and answers protocol control itself (chunk size,
/// acknowledgements, pings), so sessions above it see only commands and media. Shared by the
/// ingest server's sessions and the relay's publishing client.
/// </summary>
public sealed class RtmpConnection : IAsyncDisposable
{
    /// <summary>The chunk size we send with; large enough that most audio frames are one chunk.</summary>
    public const int DefaultOutChunkSize = 4096;

    private readonly Stream _stream;
    private readonly Socket? _socket;
    private readonly SafeSocketHandle? _socketHandle; // taken once: Socket.SafeHandle writes to the handle each time it is read
    private readonly PipeReader _input;
    private readonly PipeWriter _output;
    private readonly ChunkStreamReader _chunks;
    private readonly WriteGate _writeLock = new();
    private readonly List<ArraySegment<byte>> _gather = [];
    private readonly TimeProvider _time;
    private long _bytesReceived;
    private long _bytesSent;
    private uint _peerWindow = 2_500_000;
    private long _lastAcknowledged;
    private int _disposed;

    /// <param name="receiveThread">
    /// Read a plain TCP connection on a thread of its own (<see cref="SocketThreadReader"/>, Linux):
    /// for the ingest's connections, where a publisher's every frame is a read.
    /// </param>
    public RtmpConnection(Stream stream, string remote, TimeProvider? time = null, int maxMessageLength = 0xFFFFFF, bool receiveThread = false)
    {
        _stream = stream;
        Remote = remote;
        _time = time ?? TimeProvider.System;
        _input = receiveThread && OperatingSystem.IsLinux() && stream is NetworkStream { Socket: { } readSocket }
            ? new SocketThreadReader(readSocket)
            : PipeReader.Create(stream, new StreamPipeReaderOptions(bufferSize: 65536, minimumReadSize: 16384, leaveOpen: true));
        _output = PipeWriter.Create(stream, new StreamPipeWriterOptions(minimumBufferSize: 65536, leaveOpen: true));
        _chunks = new ChunkStreamReader(maxMessageLength);
        LastReceived = _time.GetTimestamp();
        if (stream is NetworkStream { Socket: { } socket })
        {
            // Plain TCP: media may go straight to the socket (see SendFrameAsync). Non-blocking, so a
            // full send buffer is an answer ("would block"), never a wait on the publisher's thread.
            socket.Blocking = false;
            _socket = socket;
            _socketHandle = OperatingSystem.IsLinux() ? socket.SafeHandle : null; // only the Linux sends use it
        }
    }

    public string Remote { get; }

    /// <summary>
    /// How long a read may wait below the socket's receive low-water mark (see
    /// <see cref="SocketThreadReader.WaitLimit"/>); only connections read on their own thread have one.
    /// </summary>
    public TimeSpan ReadWaitLimit
    {
        get => _input is SocketThreadReader reader ? reader.WaitLimit : Timeout.InfiniteTimeSpan;
        set
        {
            if (_input is SocketThreadReader reader)
            {
                reader.WaitLimit = value;
            }
        }
    }

    /// <summary>
    /// Every byte the peer sends is read as it arrives (see <see cref="SocketThreadReader.PromptReads"/>):
    /// it waits for our acknowledgements before it sends more, or the pacer cannot predict it.
    /// </summary>
    public bool PromptReads => _input is SocketThreadReader { PromptReads: true };

    /// <summary>How many times the peer, read promptly for its stalls, went back to merged reads (see <see cref="SocketThreadReader.PromptReadsEnded"/>).</summary>
    internal int PromptReadsEnded => _input is SocketThreadReader reader ? reader.PromptReadsEnded : 0;

    /// <summary>Reads every byte as it arrives from now on (see <see cref="PromptReads"/>); only paced connections, read on a thread of their own, call it.</summary>
    internal void ReadPromptly() => ((SocketThreadReader)_input).ReadPromptly();

    /// <summary>Waits that ended by their time limit with nothing to read (see <see cref="SocketThreadReader.EmptyTimeouts"/>).</summary>
    internal int EmptyTimeouts => _input is SocketThreadReader reader ? reader.EmptyTimeouts : 0;

    /// <summary>
    /// Paces reads (see <see cref="ArrivalPlanner"/>); only connections read on their own thread can
    /// be paced: false otherwise.
    /// </summary>
    internal bool SetReadPacer(IReadPacer? pacer)
    {
        if (_input is not SocketThreadReader reader)
        {
            return false;
        }

        reader.Pacer = pacer;
        return true;
    }

    public int OutChunkSize { get; private set; } = 128;
    public int InChunkSize => _chunks.ChunkSize;
    // Volatile reads, not Interlocked.Read: that is a locked compare-exchange on x64, and a destination's
    // send path reads BytesSent twice a write.
    public long BytesReceived => Volatile.Read(ref _bytesReceived);
    public long BytesSent => Volatile.Read(ref _bytesSent);

    /// <summary>The peer's acknowledgement of our bytes: how much of what we sent it has read.</summary>
    public long BytesAcknowledged { get; private set; }

    /// <summary>Timestamp (TimeProvider ticks) of the last byte received; for idle timeouts.</summary>
    public long LastReceived { get; private set; }

    /// <summary>Raised for each ping response with the round trip time.</summary>
    public event Action<TimeSpan>? PingAnswered;

    private long _pingSentAt;

    /// <summary>The server side of the handshake: reads C0C1, answers S0S1S2, reads C2.</summary>
    public async Task AcceptHandshakeAsync(CancellationToken cancellationToken)
    {
        var c0c1 = await ReadExactAsync(1 + RtmpHandshake.PacketSize, cancellationToken).ConfigureAwait(false);
        try
        {
            var first = c0c1.First.Span;
            var version = first[0];
            if (version != RtmpHandshake.Version)
            {
                // 6 is encrypted RTMPE; anything else is not RTMP at all.
                throw new RtmpProtocolException(version == 6
                    ? "RTMPE (encrypted RTMP) is not supported; use RTMPS"
                    : $"not an RTMP handshake (version byte 0x{version:X2})");
            }

            var c1 = new byte[RtmpHandshake.PacketSize];
            c0c1.Slice(1).CopyTo(c1);
            _input.AdvanceTo(c0c1.End);

            var response = _output.GetSpan(1 + 2 * RtmpHandshake.PacketSize);
            RtmpHandshake.WriteS0S1S2(c1, response, (uint)Environment.TickCount);
            _output.Advance(1 + 2 * RtmpHandshake.PacketSize);
            await FlushAsync(1 + 2 * RtmpHandshake.PacketSize, cancellationToken).ConfigureAwait(false);
        }
        catch
        {
            throw;
        }

        // C2 should echo S1; like nginx-rtmp and SRS we do not insist, as many encoders get it wrong.
        var c2 = await ReadExactAsync(RtmpHandshake.PacketSize, cancellationToken).ConfigureAwait(false);
        _input.AdvanceTo(c2.End);
    }

    /// <summary>The client side of the handshake (simple form, as OBS uses with most platforms).</summary>
    public async Task ConnectHandshakeAsync(CancellationToken cancellationToken)
    {
        var span = _output.GetSpan(1 + RtmpHandshake.PacketSize);
        RtmpHandshake.WriteC0C1(span, 0, digest: false);
        _output.Advance(1 + RtmpHandshake.PacketSize);
        await FlushAsync(1 + RtmpHandshake.PacketSize, cancellationToken).ConfigureAwait(false);

        var s0s1s2 = await ReadExactAsync(1 + 2 * RtmpHandshake.PacketSize, cancellationToken).ConfigureAwait(false);
        var version = s0s1s2.First.Span[0];
        if (version != RtmpHandshake.Version)
        {
            throw new RtmpProtocolException($"server answered the handshake with version 0x{version:X2}");
        }

        var c2 = _output.GetSpan(RtmpHandshake.PacketSize);
        s0s1s2.Slice(1, RtmpHandshake.PacketSize).CopyTo(c2); // C2 echoes S1
        _output.Advance(RtmpHandshake.PacketSize);
        _input.AdvanceTo(s0s1s2.End);
        await FlushAsync(RtmpHandshake.PacketSize, cancellationToken).ConfigureAwait(false);
    }

    private async Task<ReadOnlySequence<byte>> ReadExactAsync(int count, CancellationToken cancellationToken)
    {
        while (true)
        {
            var result = await _input.ReadAsync(cancellationToken).ConfigureAwait(false);
            if (result.Buffer.Length >= count)
            {
                Interlocked.Add(ref _bytesReceived, count);
                LastReceived = _time.GetTimestamp();
                return result.Buffer.Slice(0, count);
            }

            if (result.IsCompleted)
            {
                throw new RtmpProtocolException($"peer closed the connection during the handshake ({result.Buffer.Length} of {count} bytes)");
            }

            _input.AdvanceTo(result.Buffer.Start, result.Buffer.End);
        }
    }

    /// <summary>
    /// Reads the next command or media message; protocol control is handled here. Returns false
    /// when the peer closed the connection cleanly between messages.
    /// </summary>
    [System.Runtime.CompilerServices.AsyncMethodBuilder(typeof(System.Runtime.CompilerServices.PoolingAsyncValueTaskMethodBuilder<>))]
    public async ValueTask<(bool Ok, RtmpMessage Message)> ReadMessageAsync(CancellationToken cancellationToken)
    {
        while (true)
        {
            var result = await _input.ReadAsync(cancellationToken).ConfigureAwait(false);
            var buffer = result.Buffer;
            var reader = new SequenceReader<byte>(buffer);
            WakeProfile.Enter(WakeProfile.Phase.Parse);
            var complete = _chunks.TryReadMessage(ref reader, out var message);
            WakeProfile.Enter(WakeProfile.Phase.Ours);
            if (complete)
            {
                _input.AdvanceTo(reader.Position);
                var total = Interlocked.Add(ref _bytesReceived, reader.Consumed);
                LastReceived = _time.GetTimestamp();
                if (_peerWindow != 0 && total - _lastAcknowledged >= _peerWindow)
                {
                    await AcknowledgeAsync(total, cancellationToken).ConfigureAwait(false);
                }

                if (message.TypeId is RtmpMessageType.Audio or RtmpMessageType.Video)
                {
                    return (true, message); // media: nothing for the connection to do (most messages, on the hot path)
                }

                if (await HandleControlAsync(message, cancellationToken).ConfigureAwait(false))
                {
                    message.Dispose();
                    continue;
                }

                return (true, message);
            }

            _input.AdvanceTo(reader.Position, buffer.End);
            if (result.IsCompleted)
            {
                if (buffer.Length > 0)
                {
                    throw new RtmpProtocolException($"peer closed the connection in the middle of a chunk ({buffer.Length} bytes left)");
                }

                return (false, default);
            }
        }
    }

    /// <summary>Tells the peer how much we received (it is due once per its window, checked by the caller).</summary>
    private async ValueTask AcknowledgeAsync(long total, CancellationToken cancellationToken)
    {
        _lastAcknowledged = total;
        await WriteAsync(o => ProtocolControl.WriteAcknowledgement(o, (uint)total), cancellationToken).ConfigureAwait(false);
    }

    private async ValueTask<bool> HandleControlAsync(RtmpMessage message, CancellationToken cancellationToken)
    {
        switch (message.TypeId)
        {
            case RtmpMessageType.SetChunkSize:
                _chunks.SetChunkSize(ProtocolControl.ReadUInt32Body(message.Span));
                return true;
            case RtmpMessageType.Abort:
                _chunks.Abort((int)ProtocolControl.ReadUInt32Body(message.Span));
                return true;
            case RtmpMessageType.Acknowledgement:
                BytesAcknowledged = ProtocolControl.ReadUInt32Body(message.Span);
                return true;
            case RtmpMessageType.WindowAcknowledgementSize:
                _peerWindow = ProtocolControl.ReadUInt32Body(message.Span);
                return true;
            case RtmpMessageType.SetPeerBandwidth:
                return true;
            case RtmpMessageType.UserControl:
                var (type, value) = ProtocolControl.ReadUserControl(message.Span);
                if (type == UserControlEvent.PingRequest)
                {
                    await WriteAsync(o => ProtocolControl.WriteUserControl(o, UserControlEvent.PingResponse, value), cancellationToken).ConfigureAwait(false);
                }
                else if (type == UserControlEvent.PingResponse && _pingSentAt != 0)
                {
                    PingAnswered?.Invoke(_time.GetElapsedTime(_pingSentAt));
                    _pingSentAt = 0;
                }

                // Stream Begin/EOF and buffer length reach the session as-is: it may care.
                return type is UserControlEvent.PingRequest or UserControlEvent.PingResponse;
            default:
                return false;
        }
    }

    /// <summary>Sends a ping request; the peer's answer raises <see cref="PingAnswered"/>.</summary>
    public ValueTask SendPingAsync(CancellationToken cancellationToken)
    {
        _pingSentAt = _time.GetTimestamp();
        return WriteAsync(o => ProtocolControl.WriteUserControl(o, UserControlEvent.PingRequest, (uint)Environment.TickCount), cancellationToken);
    }

    /// <summary>Announces and starts using a new outgoing chunk size.</summary>
    public async ValueTask SetOutChunkSizeAsync(int chunkSize, CancellationToken cancellationToken)
    {
        await EnterWriteAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            var before = _output.UnflushedBytes;
            ProtocolControl.WriteSetChunkSize(_output, chunkSize);
            OutChunkSize = chunkSize;
            await FlushAsync((int)(_output.UnflushedBytes - before), cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            _writeLock.Exit();
        }
    }

    public ValueTask SendCommandAsync(RtmpCommand command, uint streamId, CancellationToken cancellationToken) =>
        WriteAsync(o => command.Write(o, OutChunkSize, streamId), cancellationToken);

    /// <summary>Writes a whole message (built by the callback) under the write lock and flushes it.</summary>
    public async ValueTask WriteAsync(Action<IBufferWriter<byte>> write, CancellationToken cancellationToken)
    {
        await EnterWriteAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            var before = _output.UnflushedBytes;
            write(_output);
            await FlushAsync((int)(_output.UnflushedBytes - before), cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            _writeLock.Exit();
        }
    }

    /// <summary>
    /// Sends a media frame using its shared chunked bytes for our chunk size. The pipe's flush applies
    /// back-pressure to this connection only: its own queue absorbs it, nobody else waits.
    /// </summary>
    public ValueTask SendFrameAsync(MediaFrame frame, uint streamId, CancellationToken cancellationToken)
    {
        var chunked = frame.GetChunked(OutChunkSize, streamId, out _);
        if (_socket is not null && TryEnterWrite())
        {
            // The fast path, like an event loop's write: nothing is queued in the pipe (every write
            // flushes under the lock), so the shared chunked bytes go to the socket with one
            // non-blocking send, no copy and no async machinery. What the socket cannot take now goes
            // through the pipe, whose flush waits for room without holding up anyone else.
            var sent = 0;
            try
            {
                sent = SendNow(chunked);
                if (sent == chunked.Length)
                {
                    Interlocked.Add(ref _bytesSent, sent);
                    _writeLock.Exit();
                    return ValueTask.CompletedTask;
                }
            }
            catch
            {
                _writeLock.Exit();
                throw;
            }

            Interlocked.Add(ref _bytesSent, sent);
            return SendRestLockedAsync(chunked[sent..], cancellationToken);
        }

        return SendFrameSlowAsync(chunked, cancellationToken);
    }

    /// <summary>One non-blocking send of chunked bytes: what the socket took (0 when it would block).</summary>
    private unsafe int SendNow(ReadOnlyMemory<byte> chunked)
    {
        if (OperatingSystem.IsLinux() && MemoryMarshal.TryGetArray(chunked, out var segment))
        {
            var vector = new UnixSockets.IoVector { Base = UnixSockets.AddressOf(segment.Array!, segment.Offset), Length = (nuint)segment.Count };
            return UnixSockets.Send(_socketHandle!, &vector, 1);
        }

        var sent = _socket!.Send(chunked.Span, SocketFlags.None, out var error);
        if (error is not (SocketError.Success or SocketError.WouldBlock))
        {
            throw new IOException($"the connection is closed ({error})", new SocketException((int)error));
        }

        return Math.Max(sent, 0);
    }

    /// <summary>
    /// One non-blocking gathering send of several frames' chunked bytes (pinned arrays, see
    /// <see cref="MediaFrame.GetChunked"/>), straight to <c>sendmsg</c>: what the socket took.
    /// </summary>
    [System.Runtime.Versioning.SupportedOSPlatform("linux")]
    private unsafe int SendNow(ReadOnlySpan<MediaFrame> frames, uint streamId, out int total)
    {
        var vectors = stackalloc UnixSockets.IoVector[frames.Length];
        total = 0;
        for (var i = 0; i < frames.Length; i++)
        {
            var chunked = frames[i].GetChunked(OutChunkSize, streamId, out _);
            if (!MemoryMarshal.TryGetArray(chunked, out var segment))
            {
                throw new InvalidOperationException("chunked frames live in arrays");
            }

            vectors[i] = new UnixSockets.IoVector { Base = UnixSockets.AddressOf(segment.Array!, segment.Offset), Length = (nuint)segment.Count };
            total += segment.Count;
        }

        return UnixSockets.Send(_socketHandle!, vectors, frames.Length);
    }

    /// <summary>Sends what the socket could not take at once; the write lock is held and released here.</summary>
    private ValueTask SendRestLockedAsync(ReadOnlyMemory<byte> rest, CancellationToken cancellationToken)
    {
        try
        {
            _output.Write(rest.Span); // a copy: the caller may release the frame once this returns
        }
        catch
        {
            _writeLock.Exit();
            throw;
        }

        return FlushLockedAsync(rest.Length, cancellationToken);
    }

    /// <summary>
    /// Sends several media frames, in order, with one system call when the socket takes them all at
    /// once (a gathering write of their shared chunked bytes, no copy); like
    /// <see cref="SendFrameAsync"/> otherwise.
    /// </summary>
    public ValueTask SendFramesAsync(List<MediaFrame> frames, uint streamId, CancellationToken cancellationToken)
    {
        if (frames.Count == 1)
        {
            return SendFrameAsync(frames[0], streamId, cancellationToken);
        }

        if (_socket is null || !TryEnterWrite())
        {
            return SendFramesSlowAsync(frames, streamId, cancellationToken);
        }

        return SendFramesLocked(CollectionsMarshal.AsSpan(frames), streamId, cancellationToken, out _);
    }

    /// <summary>
    /// Sends media frames now, on the caller's thread, when that takes no waiting: plain TCP, the write
    /// lock free, one gathering write of their shared chunked bytes (<paramref name="total"/> bytes).
    /// False, with nothing done, when it cannot. What the socket does not take at once is copied to
    /// the pipe, and <paramref name="send"/> completes once that is out.
    /// </summary>
    public bool TrySendFramesNow(ReadOnlySpan<MediaFrame> frames, uint streamId, CancellationToken cancellationToken, out int total, out ValueTask send)
    {
        total = 0;
        send = default;
        if (_socket is null || frames.Length > UnixSockets.MaxVectors || !TryEnterWrite())
        {
            return false;
        }

        send = SendFramesLocked(frames, streamId, cancellationToken, out total);
        return true;
    }

    /// <summary>The write lock is held (and released here): one gathering send, the rest through the pipe.</summary>
    private ValueTask SendFramesLocked(ReadOnlySpan<MediaFrame> frames, uint streamId, CancellationToken cancellationToken, out int total)
    {
        var sent = 0;
        try
        {
            sent = OperatingSystem.IsLinux() && frames.Length <= UnixSockets.MaxVectors
                ? SendNow(frames, streamId, out total)
                : SendGathered(frames, streamId, out total);
            Interlocked.Add(ref _bytesSent, sent);
            if (sent == total)
            {
                _writeLock.Exit();
                return ValueTask.CompletedTask;
            }

            // The socket took part of it: the rest waits in the pipe, in order (a copy: the caller
            // may release the frames once this returns).
            var skip = sent;
            foreach (var frame in frames)
            {
                var chunked = frame.GetChunked(OutChunkSize, streamId, out _).Span;
                if (skip >= chunked.Length)
                {
                    skip -= chunked.Length;
                    continue;
                }

                _output.Write(chunked[skip..]);
                skip = 0;
            }
        }
        catch
        {
            _writeLock.Exit();
            throw;
        }

        return FlushLockedAsync(total - sent, cancellationToken);
    }

    /// <summary>The portable gathering send (.NET pins each buffer): for Windows and very long batches.</summary>
    private int SendGathered(ReadOnlySpan<MediaFrame> frames, uint streamId, out int total)
    {
        total = 0;
        _gather.Clear();
        try
        {
            for (var i = 0; i < frames.Length; i++)
            {
                var chunked = frames[i].GetChunked(OutChunkSize, streamId, out _);
                if (!MemoryMarshal.TryGetArray(chunked, out var segment))
                {
                    throw new InvalidOperationException("chunked frames live in arrays");
                }

                _gather.Add(segment);
                total += segment.Count;
            }

            var sent = _socket!.Send(_gather, SocketFlags.None, out var error);
            if (error is not (SocketError.Success or SocketError.WouldBlock))
            {
                throw new IOException($"the connection is closed ({error})", new SocketException((int)error));
            }

            return Math.Max(sent, 0);
        }
        finally
        {
            _gather.Clear();
        }
    }

    private async ValueTask FlushLockedAsync(int bytes, CancellationToken cancellationToken)
    {
        try
        {
            await FlushAsync(bytes, cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            _writeLock.Exit();
        }
    }

    private async ValueTask SendFramesSlowAsync(List<MediaFrame> frames, uint streamId, CancellationToken cancellationToken)
    {
        await EnterWriteAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            var total = 0;
            foreach (var frame in frames)
            {
                var chunked = frame.GetChunked(OutChunkSize, streamId, out _);
                _output.Write(chunked.Span);
                total += chunked.Length;
            }

            await FlushAsync(total, cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            _writeLock.Exit();
        }
    }

    private async ValueTask SendFrameSlowAsync(ReadOnlyMemory<byte> chunked, CancellationToken cancellationToken)
    {
        await EnterWriteAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            _output.Write(chunked.Span);
            await FlushAsync(chunked.Length, cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            _writeLock.Exit();
        }
    }

    /// <summary>Sends a message body on a chunk stream (for data messages that differ per connection).</summary>
    public ValueTask SendMessageAsync(int chunkStreamId, byte typeId, uint timestamp, uint streamId, ReadOnlyMemory<byte> body, CancellationToken cancellationToken) =>
        WriteAsync(o => ChunkStreamWriter.WriteMessage(o, OutChunkSize, chunkStreamId, typeId, timestamp, streamId, body.Span), cancellationToken);

    private async ValueTask FlushAsync(int bytes, CancellationToken cancellationToken)
    {
        var result = await _output.FlushAsync(cancellationToken).ConfigureAwait(false);
        if (result.IsCompleted || result.IsCanceled)
        {
            throw new IOException("the connection is closed");
        }

        Interlocked.Add(ref _bytesSent, bytes);
    }

    /// <summary>Takes the write lock; a connection disposed meanwhile is said so (as a disposed lock would).</summary>
    private async ValueTask EnterWriteAsync(CancellationToken cancellationToken)
    {
        await _writeLock.EnterAsync(cancellationToken).ConfigureAwait(false);
        if (Volatile.Read(ref _disposed) != 0)
        {
            _writeLock.Exit();
            throw new ObjectDisposedException(nameof(RtmpConnection));
        }
    }

    /// <summary>Takes the write lock if it is free; throws once the connection is disposed.</summary>
    private bool TryEnterWrite()
    {
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        return _writeLock.TryEnter();
    }

    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        try
        {
            await _input.CompleteAsync().ConfigureAwait(false);
            await _output.CompleteAsync().ConfigureAwait(false);
        }
        catch (IOException)
        {
            // The peer is gone; nothing more to say to it.
        }
        catch (ObjectDisposedException)
        {
        }

        await _stream.DisposeAsync().ConfigureAwait(false);
        _chunks.Dispose();
    }
}
