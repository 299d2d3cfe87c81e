using System.Buffers;
using System.Buffers.Binary;
using System.Text;

namespace Restream.Media.Amf;

/// <summary>Writes AMF0 values to an <see cref="IBufferWriter{T}"/>.</summary>
public static class AmfWriter
{
    public static void WriteNumber(IBufferWriter<byte> output, double value)
    {
        var span = output.GetSpan(9);
        span[0] = (byte)Amf0Marker.Number;
        BinaryPrimitives.WriteDoubleBigEndian(span[1..], value);
        output.Advance(9);
    }

    public static void WriteBoolean(IBufferWriter<byte> output, bool value)
    {
        var span = output.GetSpan(2);
        span[0] = (byte)Amf0Marker.Boolean;
        span[1] = value ? (byte)1 : (byte)0;
        output.Advance(2);
    }

    public static void WriteNull(IBufferWriter<byte> output) => WriteMarker(output, Amf0Marker.Null);

    public static void WriteUndefined(IBufferWriter<byte> output) => WriteMarker(output, Amf0Marker.Undefined);

    /// <summary>Writes a string, as a long string when it does not fit the 16-bit length.</summary>
    public static void WriteString(IBufferWriter<byte> output, string value)
    {
        var length = Encoding.UTF8.GetByteCount(value);
        if (length > ushort.MaxValue)
        {
            WriteMarker(output, Amf0Marker.LongString);
            WriteLongUtf8(output, value, length);
        }
        else
        {
            WriteMarker(output, Amf0Marker.String);
            WriteShortUtf8(output, value, length);
        }
    }

    public static void WriteObject(IBufferWriter<byte> output, AmfObject value)
    {
        switch (value)
        {
            case AmfEcmaArray:
                {
                    var span = output.GetSpan(5);
                    span[0] = (byte)Amf0Marker.EcmaArray;
                    BinaryPrimitives.WriteUInt32BigEndian(span[1..], (uint)value.Count);
                    output.Advance(5);
                    break;
                }
            case AmfTypedObject typed:
                WriteMarker(output, Amf0Marker.TypedObject);
                WriteShortUtf8(output, typed.ClassName, Encoding.UTF8.GetByteCount(typed.ClassName));
                break;
            default:
                WriteMarker(output, Amf0Marker.Object);
                break;
        }

        foreach (var (name, item) in value)
        {
            WriteShortUtf8(output, name, Encoding.UTF8.GetByteCount(name));
            WriteValue(output, item);
        }

        var end = output.GetSpan(3);
        end[0] = 0;
        end[1] = 0;
        end[2] = (byte)Amf0Marker.ObjectEnd;
        output.Advance(3);
    }

    public static void WriteStrictArray(IBufferWriter<byte> output, IReadOnlyList<object?> items)
    {
        var span = output.GetSpan(5);
        span[0] = (byte)Amf0Marker.StrictArray;
        BinaryPrimitives.WriteUInt32BigEndian(span[1..], (uint)items.Count);
        output.Advance(5);
        foreach (var item in items)
        {
            WriteValue(output, item);
        }
    }

    public static void WriteDate(IBufferWriter<byte> output, DateTimeOffset value)
    {
        var span = output.GetSpan(11);
        span[0] = (byte)Amf0Marker.Date;
        BinaryPrimitives.WriteDoubleBigEndian(span[1..], value.ToUnixTimeMilliseconds());
        BinaryPrimitives.WriteInt16BigEndian(span[9..], 0);
        output.Advance(11);
    }

    public static void WriteValue(IBufferWriter<byte> output, object? value)
    {
        switch (value)
        {
            case null:
                WriteNull(output);
                break;
            case double d:
                WriteNumber(output, d);
                break;
            case int i:
                WriteNumber(output, i);
                break;
            case long l:
                WriteNumber(output, l);
                break;
            case uint u:
                WriteNumber(output, u);
                break;
            case bool b:
                WriteBoolean(output, b);
                break;
            case string s:
                WriteString(output, s);
                break;
            case AmfObject o:
                WriteObject(output, o);
                break;
            case IReadOnlyList<object?> list:
                WriteStrictArray(output, list);
                break;
            case DateTimeOffset date:
                WriteDate(output, date);
                break;
            case AmfXmlDocument xml:
                WriteMarker(output, Amf0Marker.XmlDocument);
                WriteLongUtf8(output, xml.Xml, Encoding.UTF8.GetByteCount(xml.Xml));
                break;
            case AmfUndefined:
                WriteUndefined(output);
                break;
            case AmfUnsupported:
                WriteMarker(output, Amf0Marker.Unsupported);
                break;
            default:
                throw new ArgumentException($"cannot write {value.GetType().Name} as AMF0", nameof(value));
        }
    }

    private static void WriteMarker(IBufferWriter<byte> output, Amf0Marker marker)
    {
        output.GetSpan(1)[0] = (byte)marker;
        output.Advance(1);
    }

    private static void WriteShortUtf8(IBufferWriter<byte> output, string value, int length)
    {
        if (length > ushort.MaxValue)
        {
            throw new ArgumentException("AMF0 property names are limited to 65535 bytes", nameof(value));
        }

        var span = output.GetSpan(2 + length);
        BinaryPrimitives.WriteUInt16BigEndian(span, (ushort)length);
        Encoding.UTF8.GetBytes(value, span[2..]);
        output.Advance(2 + length);
    }

    private static void WriteLongUtf8(IBufferWriter<byte> output, string value, int length)
    {
        var span = output.GetSpan(4 + length);
        BinaryPrimitives.WriteUInt32BigEndian(span, (uint)length);
        Encoding.UTF8.GetBytes(value, span[4..]);
        output.Advance(4 + length);
    }
}
