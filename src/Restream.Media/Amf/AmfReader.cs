using System.Buffers;
using System.Buffers.Binary;
using System.Text;

namespace Restream.Media.Amf;

/// <summary>
/// Reads AMF0 values from a complete message body. Unlike the chunk reader, an AMF body is
/// already whole when it is parsed, so running out of bytes is malformed input, not "need more".
/// </summary>
public ref struct AmfReader
{
    /// <summary>Deepest nesting of objects and arrays accepted; deeper input is refused.</summary>
    public const int MaxDepth = 32;

    /// <summary>Most elements accepted in one array or object.</summary>
    public const int MaxElements = 65_536;

    private SequenceReader<byte> _reader;
    private List<object>? _references;

    public AmfReader(ReadOnlySequence<byte> data)
    {
        _reader = new SequenceReader<byte>(data);
    }

    public AmfReader(ReadOnlyMemory<byte> data) : this(new ReadOnlySequence<byte>(data))
    {
    }

    public readonly bool End => _reader.End;

    public readonly long Consumed => _reader.Consumed;

    public object? ReadValue() => ReadValue(0);

    public double ReadNumber() => ReadValue() is double d ? d : throw new AmfException("expected an AMF0 number");

    public string ReadString() => ReadValue() is string s ? s : throw new AmfException("expected an AMF0 string");

    private object? ReadValue(int depth)
    {
        if (depth > MaxDepth)
        {
            throw new AmfException($"AMF0 nesting deeper than {MaxDepth}");
        }

        var marker = (Amf0Marker)ReadByte();
        switch (marker)
        {
            case Amf0Marker.Number:
                return ReadDouble();
            case Amf0Marker.Boolean:
                return ReadByte() != 0;
            case Amf0Marker.String:
                return ReadUtf8(ReadUInt16());
            case Amf0Marker.LongString:
                return ReadUtf8(ReadUInt32());
            case Amf0Marker.XmlDocument:
                return new AmfXmlDocument(ReadUtf8(ReadUInt32()));
            case Amf0Marker.Null:
                return null;
            case Amf0Marker.Undefined:
                return AmfUndefined.Value;
            case Amf0Marker.Unsupported:
                return AmfUnsupported.Value;
            case Amf0Marker.Object:
                {
                    var obj = new AmfObject();
                    Remember(obj);
                    ReadProperties(obj, depth);
                    return obj;
                }
            case Amf0Marker.TypedObject:
                {
                    var obj = new AmfTypedObject(ReadUtf8(ReadUInt16()));
                    Remember(obj);
                    ReadProperties(obj, depth);
                    return obj;
                }
            case Amf0Marker.EcmaArray:
                {
                    // The count is advisory: encoders (including old Flash) get it wrong, so the
                    // object-end marker is what ends the array, as in nginx-rtmp and FFmpeg.
                    _ = ReadUInt32();
                    var array = new AmfEcmaArray();
                    Remember(array);
                    ReadProperties(array, depth);
                    return array;
                }
            case Amf0Marker.StrictArray:
                {
                    var count = ReadUInt32();
                    if (count > MaxElements || count > _reader.Remaining)
                    {
                        throw new AmfException($"AMF0 strict array of {count} elements exceeds the message");
                    }

                    var items = new object?[count];
                    Remember(items);
                    for (var i = 0; i < items.Length; i++)
                    {
                        items[i] = ReadValue(depth + 1);
                    }

                    return items;
                }
            case Amf0Marker.Date:
                {
                    var millis = ReadDouble();
                    _ = ReadUInt16(); // time zone: reserved, must be ignored (AMF0 2.13)
                    if (double.IsNaN(millis) || Math.Abs(millis) > 8.64e15)
                    {
                        throw new AmfException("AMF0 date out of range");
                    }

                    return DateTimeOffset.FromUnixTimeMilliseconds((long)millis);
                }
            case Amf0Marker.Reference:
                {
                    var index = ReadUInt16();
                    if (_references is null || index >= _references.Count)
                    {
                        throw new AmfException($"AMF0 reference {index} points to no earlier object");
                    }

                    return _references[index];
                }
            case Amf0Marker.ObjectEnd:
                throw new AmfException("AMF0 object-end marker outside an object");
            case Amf0Marker.AvmPlusObject:
                throw new AmfException("AMF3 values are not supported in AMF0 commands");
            default:
                throw new AmfException($"unknown AMF0 marker 0x{(byte)marker:X2}");
        }
    }

    private void ReadProperties(AmfObject target, int depth)
    {
        for (var count = 0; ; count++)
        {
            if (count > MaxElements)
            {
                throw new AmfException("AMF0 object has too many properties");
            }

            var name = ReadUtf8(ReadUInt16());
            if (name.Length == 0 && _reader.TryPeek(out var next) && next == (byte)Amf0Marker.ObjectEnd)
            {
                _reader.Advance(1);
                return;
            }

            target[name] = ReadValue(depth + 1);
        }
    }

    private void Remember(object value) => (_references ??= []).Add(value);

    private byte ReadByte() => _reader.TryRead(out var b) ? b : throw Truncated();

    private ushort ReadUInt16() => _reader.TryReadBigEndian(out short v) ? (ushort)v : throw Truncated();

    private uint ReadUInt32() => _reader.TryReadBigEndian(out int v) ? (uint)v : throw Truncated();

    private double ReadDouble() =>
        _reader.TryReadBigEndian(out long v) ? BitConverter.Int64BitsToDouble(v) : throw Truncated();

    private string ReadUtf8(uint length)
    {
        if (length == 0)
        {
            return string.Empty;
        }

        if (length > _reader.Remaining)
        {
            throw new AmfException($"AMF0 string of {length} bytes is longer than the {_reader.Remaining} bytes left in the message");
        }

        var n = (int)length;
        string text;
        if (_reader.UnreadSpan.Length >= n)
        {
            text = Encoding.UTF8.GetString(_reader.UnreadSpan[..n]);
        }
        else
        {
            var rented = ArrayPool<byte>.Shared.Rent(n);
            try
            {
                _reader.TryCopyTo(rented.AsSpan(0, n));
                text = Encoding.UTF8.GetString(rented, 0, n);
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(rented);
            }
        }

        _reader.Advance(n);
        return text;
    }

    private static AmfException Truncated() => new("AMF0 value is truncated");
}
