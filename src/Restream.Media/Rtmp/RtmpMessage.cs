using System.Buffers;

namespace Restream.Media.Rtmp;

/// <summary>
/// One reassembled RTMP message. The body lives in a buffer rented from <see cref="ArrayPool{T}"/>;
/// whoever holds the message either hands the buffer on (<see cref="DetachBuffer"/>) or disposes it.
/// </summary>
public struct RtmpMessage : IDisposable
{
    private byte[]? _buffer;

    internal RtmpMessage(int chunkStreamId, byte typeId, uint timestamp, uint streamId, byte[] buffer, int length)
    {
        ChunkStreamId = chunkStreamId;
        TypeId = typeId;
        Timestamp = timestamp;
        StreamId = streamId;
        _buffer = buffer;
        Length = length;
    }

    public int ChunkStreamId { get; }
    public byte TypeId { get; }
    public uint Timestamp { get; }
    public uint StreamId { get; }
    public int Length { get; }

    public readonly ReadOnlyMemory<byte> Payload =>
        _buffer is null ? ReadOnlyMemory<byte>.Empty : _buffer.AsMemory(0, Length);

    public readonly ReadOnlySpan<byte> Span => Payload.Span;

    /// <summary>Takes ownership of the pooled body buffer; the message no longer returns it.</summary>
    public byte[] DetachBuffer()
    {
        var buffer = _buffer ?? [];
        _buffer = null;
        return buffer;
    }

    public void Dispose()
    {
        if (_buffer is { Length: > 0 } b)
        {
            MediaBuffers.Pool.Return(b);
        }

        _buffer = null;
    }
}
