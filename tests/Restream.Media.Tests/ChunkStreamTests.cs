using System.Buffers;
using Restream.Media.Rtmp;

namespace Restream.Media.Tests;

public sealed class ChunkStreamTests
{
    private static byte[] Body(int length, int seed)
    {
        var body = new byte[length];
        new Random(seed).NextBytes(body);
        return body;
    }

    [Theory]
    [InlineData(128, 0u, 10)]
    [InlineData(128, 1000u, 5000)]
    [InlineData(4096, 0xFFFFFEu, 10_000)]
    [InlineData(4096, 0xFFFFFFu, 10_000)] // exactly the extended-timestamp threshold
    [InlineData(60, 0x12345678u, 1000)] // extended timestamp on every type 3 chunk
    [InlineData(128, 5u, 0)]
    public void Written_messages_read_back_identically(int chunkSize, uint timestamp, int length)
    {
        var writer = new ArrayBufferWriter<byte>();
        if (chunkSize != 128)
        {
            ProtocolControl.WriteSetChunkSize(writer, chunkSize);
        }

        var body = Body(length, length);
        ChunkStreamWriter.WriteMessage(writer, chunkSize, 6, RtmpMessageType.Video, timestamp, 1, body);
        Assert.Equal(ChunkStreamWriter.GetChunkedLength(6, timestamp, length, chunkSize) + (chunkSize != 128 ? 16 : 0), writer.WrittenCount);

        var messages = FixtureReader.ReadAll(writer.WrittenMemory).Where(m => m.TypeId == RtmpMessageType.Video).ToList();
        var message = Assert.Single(messages);
        Assert.Equal((6, timestamp, 1u), (message.ChunkStreamId, message.Timestamp, message.StreamId));
        Assert.Equal(body, message.Body);
    }

    [Theory]
    [InlineData(3)]
    [InlineData(64)] // two-byte basic header
    [InlineData(319)]
    [InlineData(320)] // three-byte basic header
    [InlineData(65599)]
    public void Every_basic_header_form_round_trips(int csid)
    {
        var writer = new ArrayBufferWriter<byte>();
        ChunkStreamWriter.WriteMessage(writer, 128, csid, RtmpMessageType.Audio, 42, 1, Body(300, csid));
        var message = Assert.Single(FixtureReader.ReadAll(writer.WrittenMemory));
        Assert.Equal(csid, message.ChunkStreamId);
        Assert.Equal(Body(300, csid), message.Body);
    }

    [Fact]
    public void Interleaved_chunks_of_two_chunk_streams_reassemble_both_messages()
    {
        var video = Body(300, 1);
        var audio = Body(200, 2);
        var v = new ArrayBufferWriter<byte>();
        var a = new ArrayBufferWriter<byte>();
        ChunkStreamWriter.WriteMessage(v, 128, 6, RtmpMessageType.Video, 40, 1, video); // 12+128, 1+128, 1+44
        ChunkStreamWriter.WriteMessage(a, 128, 4, RtmpMessageType.Audio, 41, 1, audio); // 12+128, 1+72
        var vb = v.WrittenSpan.ToArray();
        var ab = a.WrittenSpan.ToArray();
        byte[] interleaved = [.. vb[..140], .. ab[..140], .. vb[140..269], .. ab[140..], .. vb[269..]];

        var messages = FixtureReader.ReadAll(interleaved);
        Assert.Equal(2, messages.Count);
        Assert.Equal(audio, messages[0].Body); // audio completes first
        Assert.Equal(video, messages[1].Body);
    }

    [Fact]
    public void Compressed_headers_type_1_2_3_carry_deltas()
    {
        // fmt0 ts=1000 len=3; fmt1 delta=33 len=2; fmt2 delta=34; fmt3 (repeats delta 34).
        byte[] bytes =
        [
            0x06, 0x00, 0x03, 0xE8, 0x00, 0x00, 0x03, 0x09, 0x01, 0, 0, 0, 1, 2, 3,
            0x46, 0x00, 0x00, 0x21, 0x00, 0x00, 0x02, 0x09, 4, 5,
            0x86, 0x00, 0x00, 0x22, 6, 7,
            0xC6, 8, 9,
        ];
        var messages = FixtureReader.ReadAll(bytes);
        Assert.Equal([1000u, 1033u, 1067u, 1101u], messages.Select(m => m.Timestamp));
        Assert.All(messages, m => Assert.Equal(1u, m.StreamId));
        Assert.Equal(new byte[] { 8, 9 }, messages[3].Body);
    }

    [Fact]
    public void Chunk_size_change_mid_stream_applies_to_following_chunks()
    {
        var writer = new ArrayBufferWriter<byte>();
        ChunkStreamWriter.WriteMessage(writer, 128, 6, RtmpMessageType.Video, 0, 1, Body(1000, 1));
        ProtocolControl.WriteSetChunkSize(writer, 300);
        ChunkStreamWriter.WriteMessage(writer, 300, 6, RtmpMessageType.Video, 33, 1, Body(1000, 2));
        ProtocolControl.WriteSetChunkSize(writer, 65536);
        ChunkStreamWriter.WriteMessage(writer, 65536, 6, RtmpMessageType.Video, 66, 1, Body(100_000, 3));
        var video = FixtureReader.ReadAll(writer.WrittenMemory, () => 97).Where(m => m.TypeId == RtmpMessageType.Video).ToList();
        Assert.Equal(3, video.Count);
        Assert.Equal(Body(100_000, 3), video[2].Body);
    }

    [Fact]
    public void Extended_timestamp_missing_on_continuation_chunks_is_tolerated()
    {
        // fmt0 with extended timestamp, chunk size 4, then a type 3 chunk WITHOUT the repeated field.
        byte[] bytes =
        [
            0x06, 0xFF, 0xFF, 0xFF, 0x00, 0x00, 0x08, 0x09, 0x01, 0, 0, 0, 0x01, 0x00, 0x00, 0x00, 1, 2, 3, 4,
            0xC6, 5, 6, 7, 8,
        ];
        using var reader = new ChunkStreamReader();
        reader.SetChunkSize(4);
        var sequence = new SequenceReader<byte>(new ReadOnlySequence<byte>(bytes));
        Assert.True(reader.TryReadMessage(ref sequence, out var message));
        using (message)
        {
            Assert.Equal(0x01000000u, message.Timestamp);
            Assert.Equal(new byte[] { 1, 2, 3, 4, 5, 6, 7, 8 }, message.Span.ToArray());
        }
    }

    [Fact]
    public void Abort_drops_the_partial_message()
    {
        var writer = new ArrayBufferWriter<byte>();
        ChunkStreamWriter.WriteMessage(writer, 128, 6, RtmpMessageType.Video, 0, 1, Body(200, 1));
        var partial = writer.WrittenSpan[..140].ToArray();
        using var reader = new ChunkStreamReader();
        var sequence = new SequenceReader<byte>(new ReadOnlySequence<byte>(partial));
        Assert.False(reader.TryReadMessage(ref sequence, out _));
        Assert.Equal(140, sequence.Consumed); // the first chunk was taken into the partial message
        reader.Abort(6);
        var next = new ArrayBufferWriter<byte>();
        ChunkStreamWriter.WriteMessage(next, 128, 6, RtmpMessageType.Video, 10, 1, Body(50, 2));
        sequence = new SequenceReader<byte>(new ReadOnlySequence<byte>(next.WrittenMemory));
        Assert.True(reader.TryReadMessage(ref sequence, out var message));
        using (message)
        {
            Assert.Equal(Body(50, 2), message.Span.ToArray());
        }
    }

    [Theory]
    [InlineData(0u)]
    [InlineData(0x80000000u)]
    [InlineData(0x01000000u)]
    public void Invalid_chunk_sizes_are_refused(uint size)
    {
        using var reader = new ChunkStreamReader();
        Assert.Throws<RtmpProtocolException>(() => reader.SetChunkSize(size));
    }

    [Fact]
    public void A_type_3_header_on_an_unknown_chunk_stream_is_a_protocol_error()
    {
        using var reader = new ChunkStreamReader();
        var sequence = new SequenceReader<byte>(new ReadOnlySequence<byte>(new byte[] { 0xC5, 1, 2 }));
        RtmpProtocolException? error = null;
        try
        {
            reader.TryReadMessage(ref sequence, out _);
        }
        catch (RtmpProtocolException e)
        {
            error = e;
        }

        Assert.NotNull(error);
    }

    [Fact]
    public void Messages_over_the_size_limit_are_refused_before_buffering()
    {
        using var reader = new ChunkStreamReader(maxMessageLength: 1000);
        byte[] header = [0x06, 0, 0, 0, 0x00, 0x10, 0x00, 0x09, 1, 0, 0, 0]; // 4096-byte message
        var sequence = new SequenceReader<byte>(new ReadOnlySequence<byte>(header));
        var threw = false;
        try
        {
            reader.TryReadMessage(ref sequence, out _);
        }
        catch (RtmpProtocolException)
        {
            threw = true;
        }

        Assert.True(threw);
    }

    [Fact]
    public void Too_many_chunk_streams_are_refused()
    {
        var writer = new ArrayBufferWriter<byte>();
        for (var csid = 3; csid < 3 + ChunkStreamReader.MaxChunkStreams + 1; csid++)
        {
            ChunkStreamWriter.WriteMessage(writer, 128, csid, RtmpMessageType.Audio, 0, 1, new byte[] { 1 });
        }

        Assert.Throws<RtmpProtocolException>(() => FixtureReader.ReadAll(writer.WrittenMemory));
    }

    [Fact]
    public void The_chunk_stream_limit_counts_low_and_high_ids_together()
    {
        // Ids below 64 live in an array, the others in a dictionary: the limit covers both.
        var writer = new ArrayBufferWriter<byte>();
        for (var i = 0; i <= ChunkStreamReader.MaxChunkStreams; i++)
        {
            var csid = i % 2 == 0 ? 3 + (i / 2) : 100 + i;
            ChunkStreamWriter.WriteMessage(writer, 128, csid, RtmpMessageType.Audio, 0, 1, new byte[] { 1 });
        }

        Assert.Throws<RtmpProtocolException>(() => FixtureReader.ReadAll(writer.WrittenMemory));
    }

    [Theory]
    [InlineData(5)]
    [InlineData(63)]
    [InlineData(64)]
    [InlineData(400)]
    public void Abort_drops_the_partial_message_of_its_chunk_stream_only(int csid)
    {
        // A 300-byte message on csid, cut after its first 128-byte chunk; a whole one on another stream.
        var whole = new ArrayBufferWriter<byte>();
        ChunkStreamWriter.WriteMessage(whole, 128, csid, RtmpMessageType.Audio, 1, 1, Body(300, 1));
        var other = new ArrayBufferWriter<byte>();
        ChunkStreamWriter.WriteMessage(other, 128, csid == 5 ? 6 : 5, RtmpMessageType.Video, 2, 1, Body(100, 2));
        var firstChunk = whole.WrittenSpan[..((csid < 64 ? 1 : csid < 320 ? 2 : 3) + 11 + 128)].ToArray();

        using var reader = new ChunkStreamReader();
        var input = new SequenceReader<byte>(new ReadOnlySequence<byte>(firstChunk));
        Assert.False(reader.TryReadMessage(ref input, out _));
        reader.Abort(csid);

        // After the abort the stream starts over with a full message: it arrives whole, and so does the other.
        var rest = new SequenceReader<byte>(new ReadOnlySequence<byte>([.. whole.WrittenSpan, .. other.WrittenSpan]));
        Assert.True(reader.TryReadMessage(ref rest, out var first));
        Assert.Equal(Body(300, 1), first.Span.ToArray());
        first.Dispose();
        Assert.True(reader.TryReadMessage(ref rest, out var second));
        Assert.Equal(Body(100, 2), second.Span.ToArray());
        second.Dispose();
    }
}
