using System.Buffers;
using System.Buffers.Binary;
using Restream.Media.Amf;

namespace Restream.Media.Tests;

public sealed class AmfTests
{
    private static byte[] Write(object? value)
    {
        var writer = new ArrayBufferWriter<byte>();
        AmfWriter.WriteValue(writer, value);
        return writer.WrittenSpan.ToArray();
    }

    private static object? RoundTrip(object? value)
    {
        var reader = new AmfReader(Write(value));
        var result = reader.ReadValue();
        Assert.True(reader.End);
        return result;
    }

    [Fact]
    public void Scalars_round_trip()
    {
        Assert.Equal(3.25, RoundTrip(3.25));
        Assert.Equal(double.NaN, RoundTrip(double.NaN));
        Assert.Equal(true, RoundTrip(true));
        Assert.Equal(false, RoundTrip(false));
        Assert.Equal("héllo", RoundTrip("héllo"));
        Assert.Equal("", RoundTrip(""));
        Assert.Null(RoundTrip(null));
        Assert.Same(AmfUndefined.Value, RoundTrip(AmfUndefined.Value));
        Assert.Same(AmfUnsupported.Value, RoundTrip(AmfUnsupported.Value));
        Assert.Equal(new AmfXmlDocument("<a/>"), RoundTrip(new AmfXmlDocument("<a/>")));
    }

    [Fact]
    public void Number_is_big_endian_ieee754_after_marker_0()
    {
        Assert.Equal(new byte[] { 0x00, 0x3F, 0xF0, 0, 0, 0, 0, 0, 0 }, Write(1.0));
    }

    [Fact]
    public void Long_string_is_used_past_65535_bytes_and_round_trips()
    {
        var text = new string('x', 70_000);
        var bytes = Write(text);
        Assert.Equal((byte)Amf0Marker.LongString, bytes[0]);
        Assert.Equal(70_000u, BinaryPrimitives.ReadUInt32BigEndian(bytes.AsSpan(1)));
        Assert.Equal(text, RoundTrip(text));
    }

    [Fact]
    public void Date_round_trips_to_the_millisecond()
    {
        var date = new DateTimeOffset(2026, 11, 24, 12, 30, 45, 123, TimeSpan.Zero);
        Assert.Equal(date, RoundTrip(date));
    }

    [Fact]
    public void Objects_ecma_arrays_and_strict_arrays_round_trip_in_order()
    {
        var value = new AmfObject
        {
            { "app", "live" },
            { "nested", new AmfObject { { "n", 1.0 }, { "list", new object?[] { "a", 2.0, null, true } } } },
            { "meta", new AmfEcmaArray { { "width", 1280.0 }, { "height", 720.0 } } },
            { "typed", new AmfTypedObject("flex.Thing") { { "x", "y" } } },
        };

        var back = Assert.IsType<AmfObject>(RoundTrip(value));
        Assert.Equal(["app", "nested", "meta", "typed"], back.Select(p => p.Key));
        var nested = Assert.IsType<AmfObject>(back["nested"]);
        Assert.Equal(new object?[] { "a", 2.0, null, true }, Assert.IsType<object?[]>(nested["list"]));
        var meta = Assert.IsType<AmfEcmaArray>(back["meta"]);
        Assert.Equal(720.0, meta.GetNumber("height"));
        var typed = Assert.IsType<AmfTypedObject>(back["typed"]);
        Assert.Equal("flex.Thing", typed.ClassName);
        Assert.Equal("y", typed.GetString("x"));
    }

    [Fact]
    public void Ecma_array_with_a_wrong_count_still_ends_at_the_object_end_marker()
    {
        // Count says 5, two properties follow: FLV files from some encoders look like this.
        byte[] bytes = [0x08, 0, 0, 0, 5, 0, 1, (byte)'a', 0x01, 1, 0, 1, (byte)'b', 0x05, 0, 0, 0x09];
        var reader = new AmfReader(bytes);
        var array = Assert.IsType<AmfEcmaArray>(reader.ReadValue());
        Assert.Equal(2, array.Count);
        Assert.True(reader.End);
    }

    [Fact]
    public void Reference_points_to_an_earlier_object()
    {
        // Strict array of two: an object, then a reference to object #1 (the array is #0).
        byte[] bytes = [0x0A, 0, 0, 0, 2, 0x03, 0, 1, (byte)'k', 0x02, 0, 1, (byte)'v', 0, 0, 0x09, 0x07, 0, 1];
        var items = Assert.IsType<object?[]>(new AmfReader(bytes).ReadValue());
        Assert.Same(items[0], items[1]);
    }

    [Theory]
    [InlineData(new byte[] { 0x00, 0x3F })] // truncated number
    [InlineData(new byte[] { 0x02, 0x03, 0xE8, (byte)'a' })] // string of 1000 bytes, 1 present
    [InlineData(new byte[] { 0x0C, 0x7F, 0xFF, 0xFF, 0xFF })] // long string of 2 GiB
    [InlineData(new byte[] { 0x0A, 0xFF, 0xFF, 0xFF, 0xFF })] // strict array of 4 billion
    [InlineData(new byte[] { 0x03, 0x00, 0x01, (byte)'a' })] // object without end
    [InlineData(new byte[] { 0x07, 0x00, 0x05 })] // reference to nothing
    [InlineData(new byte[] { 0x09 })] // object end alone
    [InlineData(new byte[] { 0x11, 0x01 })] // AMF3 switch
    [InlineData(new byte[] { 0x42 })] // unknown marker
    public void Malformed_input_throws_AmfException(byte[] bytes)
    {
        Assert.Throws<AmfException>(() => new AmfReader(bytes).ReadValue());
    }

    [Fact]
    public void Nesting_deeper_than_the_limit_is_refused_without_overflowing_the_stack()
    {
        var bytes = new List<byte>();
        for (var i = 0; i < 10_000; i++)
        {
            bytes.AddRange([0x0A, 0, 0, 0, 1]); // strict array of one, nested
        }

        bytes.Add(0x05);
        Assert.Throws<AmfException>(() => new AmfReader(bytes.ToArray()).ReadValue());
    }

    [Fact]
    public void Values_split_across_segments_are_read()
    {
        var bytes = Write(new AmfObject { { "description", "a string that crosses the segment boundary" } });
        var sequence = Segments.Split(bytes, 5);
        var back = Assert.IsType<AmfObject>(new AmfReader(sequence).ReadValue());
        Assert.Equal("a string that crosses the segment boundary", back.GetString("description"));
    }
}

/// <summary>Builds multi-segment sequences, as a pipe hands them out.</summary>
public static class Segments
{
    public static ReadOnlySequence<byte> Split(byte[] data, int size)
    {
        Segment? first = null, last = null;
        for (var i = 0; i < data.Length; i += size)
        {
            var memory = data.AsMemory(i, Math.Min(size, data.Length - i));
            if (first is null)
            {
                first = last = new Segment(memory, 0);
            }
            else
            {
                last = last!.Append(memory);
            }
        }

        return first is null ? ReadOnlySequence<byte>.Empty : new ReadOnlySequence<byte>(first, 0, last!, last!.Memory.Length);
    }

    private sealed class Segment : ReadOnlySequenceSegment<byte>
    {
        public Segment(ReadOnlyMemory<byte> memory, long index)
        {
            Memory = memory;
            RunningIndex = index;
        }

        public Segment Append(ReadOnlyMemory<byte> memory)
        {
            var next = new Segment(memory, RunningIndex + Memory.Length);
            Next = next;
            return next;
        }
    }
}
