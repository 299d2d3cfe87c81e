using System.Buffers;
using System.Collections.Concurrent;
using Restream.Media.Flv;
using Restream.Media.Rtmp;

namespace Restream.Media;

public enum MediaKind : byte
{
    Audio = RtmpMessageType.Audio,
    Video = RtmpMessageType.Video,
    Data = RtmpMessageType.DataAmf0,
}

/// <summary>
/// One timestamped FLV/RTMP media message shared by every subscriber of a stream. The body is a
/// pooled buffer, the frame object itself is pooled, and a reference count returns both when the
/// last subscriber is done. The chunked form is built once per (chunk size, message stream) and the
/// same bytes are written to every connection that uses that chunk size.
/// </summary>
public sealed class MediaFrame
{
    private const int PoolLimit = 4096;
    private static readonly ConcurrentQueue<MediaFrame> Pool = new();

    private byte[] _buffer = [];
    private int _references;
    private byte[]? _chunked;
    private int _chunkedLength;
    private int _chunkedSize;
    private uint _chunkedStreamId;

    private MediaFrame()
    {
    }

    public MediaKind Kind { get; private set; }
    public uint Timestamp { get; private set; }
    public int Length { get; private set; }
    public bool IsKeyframe { get; private set; }
    public bool IsSequenceHeader { get; private set; }
    public ReadOnlyMemory<byte> Payload => _buffer.AsMemory(0, Length);

    /// <summary>How many frames are out of the pool right now (for leak checks and metrics).</summary>
    public static int Outstanding => _outstanding;
    private static int _outstanding;

    /// <summary>Wraps a pooled buffer (ownership moves to the frame) with a reference count of one.</summary>
    public static MediaFrame Create(MediaKind kind, uint timestamp, byte[] pooledBuffer, int length)
    {
        if (!Pool.TryDequeue(out var frame))
        {
            frame = new MediaFrame();
        }

        Interlocked.Increment(ref _outstanding);
        var body = pooledBuffer.AsSpan(0, length);
        frame._buffer = pooledBuffer;
        frame.Length = length;
        frame.Kind = kind;
        frame.Timestamp = timestamp;
        frame.IsKeyframe = kind == MediaKind.Video && FlvMedia.IsVideoKeyframe(body);
        frame.IsSequenceHeader = kind switch
        {
            MediaKind.Video => FlvMedia.IsVideoSequenceHeader(body),
            MediaKind.Audio => FlvMedia.IsAudioSequenceHeader(body),
            _ => false,
        };
        frame._references = 1;
        return frame;
    }

    /// <summary>Copies <paramref name="body"/> into a pooled buffer; for tests and cold paths.</summary>
    public static MediaFrame Copy(MediaKind kind, uint timestamp, ReadOnlySpan<byte> body)
    {
        var buffer = MediaBuffers.Pool.Rent(Math.Max(1, body.Length));
        body.CopyTo(buffer);
        return Create(kind, timestamp, buffer, body.Length);
    }

    public MediaFrame AddRef()
    {
        if (Interlocked.Increment(ref _references) <= 1)
        {
            throw new InvalidOperationException("AddRef on a released media frame");
        }

        return this;
    }

    public void Release()
    {
        var left = Interlocked.Decrement(ref _references);
        if (left > 0)
        {
            return;
        }

        if (left < 0)
        {
            throw new InvalidOperationException("media frame released more often than referenced");
        }

        if (_buffer.Length > 0)
        {
            MediaBuffers.Pool.Return(_buffer);
        }

        if (_chunked is not null)
        {
            MediaBuffers.Pool.Return(_chunked);
            _chunked = null;
        }

        _buffer = [];
        Length = 0;
        Interlocked.Decrement(ref _outstanding);
        if (Pool.Count < PoolLimit)
        {
            Pool.Enqueue(this);
        }
    }

    public int ChunkStreamId => Kind switch
    {
        MediaKind.Audio => RtmpChunkStreams.Audio,
        MediaKind.Video => RtmpChunkStreams.Video,
        _ => RtmpChunkStreams.Data,
    };

    /// <summary>
    /// The frame as RTMP chunks for <paramref name="chunkSize"/> and <paramref name="streamId"/>.
    /// The first caller builds them; later callers with the same parameters get the same bytes.
    /// Valid while the caller holds a reference. The bytes always live in a pinned array.
    /// </summary>
    public ReadOnlyMemory<byte> GetChunked(int chunkSize, uint streamId, out bool shared)
    {
        lock (this)
        {
            if (_chunked is not null && _chunkedSize == chunkSize && _chunkedStreamId == streamId)
            {
                shared = true;
                return _chunked.AsMemory(0, _chunkedLength);
            }

            var length = ChunkStreamWriter.GetChunkedLength(ChunkStreamId, Timestamp, Length, chunkSize);
            var buffer = MediaBuffers.Pool.Rent(length);
            ChunkStreamWriter.WriteMessage(buffer, chunkSize, ChunkStreamId, (byte)Kind, Timestamp, streamId, Payload.Span);
            shared = false;
            if (_chunked is null)
            {
                _chunked = buffer;
                _chunkedLength = length;
                _chunkedSize = chunkSize;
                _chunkedStreamId = streamId;
                return buffer.AsMemory(0, length);
            }

            // A second shape: rare (a peer with another message stream id). Keep the first cached and
            // hand this one out as a copy the caller does not own: write it into a fresh array (pinned,
            // like every chunked buffer, so a send may pass its address straight to the kernel).
            var copy = GC.AllocateUninitializedArray<byte>(length, pinned: true);
            buffer.AsSpan(0, length).CopyTo(copy);
            MediaBuffers.Pool.Return(buffer);
            return copy;
        }
    }
}
