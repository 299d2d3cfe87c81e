using System.Buffers;
using System.Buffers.Binary;

namespace Restream.Media.Rtmp;

/// <summary>
/// Turns the chunk stream of one RTMP connection back into messages (RTMP specification 5.3).
/// It is stateful (per chunk stream headers, partial messages, chunk size) and tries to take one
/// whole chunk at a time: when a chunk is incomplete it consumes nothing, so the caller can advance
/// its pipe to what was consumed and wait for more.
/// </summary>
public sealed class ChunkStreamReader : IDisposable
{
    /// <summary>Largest chunk size a peer may set. The field is 31 bits; 16 MiB is the useful bound.</summary>
    public const int MaxChunkSize = 0xFFFFFF;

    /// <summary>Most chunk streams one connection may have open, to bound memory per connection.</summary>
    public const int MaxChunkStreams = 64;

    /// <summary>Chunk streams by id: ids below 64 (all that encoders use) in an array, the rest in a dictionary.</summary>
    private readonly ChunkStreamState?[] _lowStreams = new ChunkStreamState?[64];
    private readonly Dictionary<int, ChunkStreamState> _streams = [];
    private int _streamCount;
    private readonly int _maxMessageLength;

    public ChunkStreamReader(int maxMessageLength = 0xFFFFFF)
    {
        _maxMessageLength = maxMessageLength;
    }

    public int ChunkSize { get; private set; } = 128;

    /// <summary>Applies a Set Chunk Size from the peer, refusing values the spec rules out.</summary>
    public void SetChunkSize(uint size)
    {
        if (size == 0 || size > 0x7FFFFFFF)
        {
            throw new RtmpProtocolException($"invalid chunk size {size}");
        }

        if (size > MaxChunkSize)
        {
            throw new RtmpProtocolException($"chunk size {size} exceeds the limit of {MaxChunkSize}");
        }

        ChunkSize = (int)size;
    }

    /// <summary>Drops the partly received message on a chunk stream (Abort message).</summary>
    public void Abort(int chunkStreamId)
    {
        if (Find(chunkStreamId) is { } state)
        {
            state.ReleasePartial();
        }
    }

    /// <summary>
    /// Reads chunks until one message is whole. Returns false when the input ends first; the
    /// reader then stands at the start of the incomplete chunk.
    /// </summary>
    public bool TryReadMessage(ref SequenceReader<byte> reader, out RtmpMessage message)
    {
        while (true)
        {
            var consumedBefore = reader.Consumed;
            switch (TryReadChunk(ref reader, out message))
            {
                case ChunkResult.Message:
                    return true;
                case ChunkResult.Partial:
                    continue;
                default:
                    reader.Rewind(reader.Consumed - consumedBefore);
                    return false;
            }
        }
    }

    private enum ChunkResult { NeedMore, Partial, Message }

    private ChunkResult TryReadChunk(ref SequenceReader<byte> reader, out RtmpMessage message)
    {
        message = default;

        // Basic header (5.3.1.1): fmt in the top two bits, then a 1, 2 or 3 byte chunk stream id.
        if (!reader.TryRead(out var first))
        {
            return ChunkResult.NeedMore;
        }

        var fmt = first >> 6;
        int csid = first & 0x3F;
        if (csid == 0)
        {
            if (!reader.TryRead(out var b))
            {
                return ChunkResult.NeedMore;
            }

            csid = b + 64;
        }
        else if (csid == 1)
        {
            if (!reader.TryRead(out var lo) || !reader.TryRead(out var hi))
            {
                return ChunkResult.NeedMore;
            }

            csid = hi * 256 + lo + 64;
        }

        var headerLength = fmt switch { 0 => 11, 1 => 7, 2 => 3, _ => 0 };
        Span<byte> header = stackalloc byte[11];
        if (headerLength > 0 && !reader.TryCopyTo(header[..headerLength]))
        {
            return ChunkResult.NeedMore;
        }

        reader.Advance(headerLength);

        var state = Find(csid);
        if (state is null)
        {
            if (fmt != 0)
            {
                throw new RtmpProtocolException($"chunk stream {csid} starts with a type {fmt} header");
            }

            if (_streamCount >= MaxChunkStreams)
            {
                throw new RtmpProtocolException($"more than {MaxChunkStreams} chunk streams");
            }
        }

        // Work on copies so that a chunk whose body has not fully arrived changes nothing.
        var s = state?.Header ?? default;
        var startsMessage = state is null || state.Filled == 0;
        uint timestampField = 0;
        switch (fmt)
        {
            case 0:
                timestampField = BigEndian.ReadUInt24(header);
                s.Length = (int)BigEndian.ReadUInt24(header[3..]);
                s.TypeId = header[6];
                s.StreamId = BinaryPrimitives.ReadUInt32LittleEndian(header[7..]);
                s.Extended = timestampField == 0xFFFFFF;
                break;
            case 1:
                timestampField = BigEndian.ReadUInt24(header);
                s.Length = (int)BigEndian.ReadUInt24(header[3..]);
                s.TypeId = header[6];
                s.Extended = timestampField == 0xFFFFFF;
                break;
            case 2:
                timestampField = BigEndian.ReadUInt24(header);
                s.Extended = timestampField == 0xFFFFFF;
                break;
        }

        if (s.Extended)
        {
            if (!reader.TryReadBigEndian(out int ext))
            {
                return ChunkResult.NeedMore;
            }

            if (fmt == 3 && !startsMessage && (uint)ext != s.ExtendedValue)
            {
                // Some encoders omit the extended timestamp on continuation chunks (the spec's
                // wording allowed both); the four bytes belong to the body then.
                reader.Rewind(4);
            }
            else
            {
                timestampField = (uint)ext;
                s.ExtendedValue = (uint)ext;
            }
        }

        if (fmt == 0 && !startsMessage)
        {
            // A new type 0 header mid-message: the peer abandoned the previous message.
            state!.ReleasePartial();
            startsMessage = true;
        }

        if (startsMessage)
        {
            switch (fmt)
            {
                case 0:
                    s.Timestamp = timestampField;
                    s.Delta = timestampField; // 5.3.1.2.4: a type 3 after a type 0 repeats it as a delta
                    break;
                case 1:
                case 2:
                    s.Delta = timestampField;
                    s.Timestamp += timestampField;
                    break;
                default:
                    s.Timestamp += s.Delta;
                    break;
            }

            if (s.Length > _maxMessageLength)
            {
                throw new RtmpProtocolException($"message of {s.Length} bytes exceeds the limit of {_maxMessageLength}");
            }
        }
        else if (fmt is 1 or 2)
        {
            throw new RtmpProtocolException($"type {fmt} header in the middle of a message on chunk stream {csid}");
        }

        var filled = state?.Filled ?? 0;
        var take = Math.Min(ChunkSize, s.Length - filled);
        if (reader.Remaining < take)
        {
            return ChunkResult.NeedMore;
        }

        // The whole chunk is here: commit.
        if (state is null)
        {
            state = new ChunkStreamState();
            if (csid < _lowStreams.Length)
            {
                _lowStreams[csid] = state;
            }
            else
            {
                _streams.Add(csid, state);
            }

            _streamCount++;
        }

        state.Header = s;
        if (s.Length == 0)
        {
            message = new RtmpMessage(csid, s.TypeId, s.Timestamp, s.StreamId, [], 0);
            return ChunkResult.Message;
        }

        state.Buffer ??= MediaBuffers.Pool.Rent(s.Length);
        reader.TryCopyTo(state.Buffer.AsSpan(filled, take));
        reader.Advance(take);
        state.Filled = filled + take;
        if (state.Filled < s.Length)
        {
            return ChunkResult.Partial;
        }

        message = new RtmpMessage(csid, s.TypeId, s.Timestamp, s.StreamId, state.Buffer, s.Length);
        state.Buffer = null;
        state.Filled = 0;
        return ChunkResult.Message;
    }

    private ChunkStreamState? Find(int csid) =>
        (uint)csid < (uint)_lowStreams.Length ? _lowStreams[csid] : _streams.GetValueOrDefault(csid);

    public void Dispose()
    {
        foreach (var state in _lowStreams)
        {
            state?.ReleasePartial();
        }

        foreach (var state in _streams.Values)
        {
            state.ReleasePartial();
        }

        Array.Clear(_lowStreams);
        _streams.Clear();
        _streamCount = 0;
    }

    private struct ChunkHeader
    {
        public uint Timestamp;
        public uint Delta;
        public int Length;
        public byte TypeId;
        public uint StreamId;
        public bool Extended;
        public uint ExtendedValue;
    }

    private sealed class ChunkStreamState
    {
        public ChunkHeader Header;
        public byte[]? Buffer;
        public int Filled;

        public void ReleasePartial()
        {
            if (Buffer is not null)
            {
                MediaBuffers.Pool.Return(Buffer);
                Buffer = null;
            }

            Filled = 0;
        }
    }
}
