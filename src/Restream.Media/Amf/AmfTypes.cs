namespace Restream.Media.Amf;

/// <summary>AMF0 type markers (AMF0 specification, section 2.1).</summary>
public enum Amf0Marker : byte
{
    Number = 0x00,
    Boolean = 0x01,
    String = 0x02,
    Object = 0x03,
    MovieClip = 0x04,
    Null = 0x05,
    Undefined = 0x06,
    Reference = 0x07,
    EcmaArray = 0x08,
    ObjectEnd = 0x09,
    StrictArray = 0x0A,
    Date = 0x0B,
    LongString = 0x0C,
    Unsupported = 0x0D,
    RecordSet = 0x0E,
    XmlDocument = 0x0F,
    TypedObject = 0x10,
    AvmPlusObject = 0x11,
}

/// <summary>The AMF0 <c>undefined</c> value (null is represented by a CLR null).</summary>
public sealed class AmfUndefined
{
    public static readonly AmfUndefined Value = new();
    private AmfUndefined() { }
    public override string ToString() => "undefined";
}

/// <summary>The AMF0 <c>unsupported</c> marker.</summary>
public sealed class AmfUnsupported
{
    public static readonly AmfUnsupported Value = new();
    private AmfUnsupported() { }
}

/// <summary>An AMF0 XML document: a long string that is tagged as XML.</summary>
public sealed record AmfXmlDocument(string Xml);

/// <summary>
/// An anonymous AMF0 object: an ordered list of named properties. Order is kept because
/// peers such as nginx-rtmp and Flash Media Server read <c>connect</c> objects in order.
/// </summary>
public class AmfObject : IEnumerable<KeyValuePair<string, object?>>
{
    private readonly List<KeyValuePair<string, object?>> _properties = [];

    public int Count => _properties.Count;

    public object? this[string name]
    {
        get => TryGetValue(name, out var value) ? value : null;
        set
        {
            for (var i = 0; i < _properties.Count; i++)
            {
                if (_properties[i].Key == name)
                {
                    _properties[i] = new(name, value);
                    return;
                }
            }

            _properties.Add(new(name, value));
        }
    }

    public void Add(string name, object? value) => this[name] = value;

    public bool TryGetValue(string name, out object? value)
    {
        foreach (var property in _properties)
        {
            if (property.Key == name)
            {
                value = property.Value;
                return true;
            }
        }

        value = null;
        return false;
    }

    public string? GetString(string name) => this[name] as string;

    public double? GetNumber(string name) => this[name] is double d ? d : null;

    public IEnumerator<KeyValuePair<string, object?>> GetEnumerator() => _properties.GetEnumerator();

    System.Collections.IEnumerator System.Collections.IEnumerable.GetEnumerator() => GetEnumerator();
}

/// <summary>An AMF0 ECMA (associative) array; <c>onMetaData</c> usually arrives as one.</summary>
public sealed class AmfEcmaArray : AmfObject;

/// <summary>An AMF0 typed object: an object with a registered class name.</summary>
public sealed class AmfTypedObject(string className) : AmfObject
{
    public string ClassName { get; } = className;
}

/// <summary>Thrown when AMF0 data is malformed or exceeds a limit; the connection closes.</summary>
public sealed class AmfException(string message) : Exception(message);
