using System.Buffers.Binary;

namespace Restream.Media;

/// <summary>Reads big-endian values from a span; used by the small binary parsers here.</summary>
internal static class BigEndian
{
    public static uint ReadUInt24(ReadOnlySpan<byte> s) => (uint)(s[0] << 16 | s[1] << 8 | s[2]);

    public static void WriteUInt24(Span<byte> s, uint value)
    {
        s[0] = (byte)(value >> 16);
        s[1] = (byte)(value >> 8);
        s[2] = (byte)value;
    }

    public static uint ReadUInt32(ReadOnlySpan<byte> s) => BinaryPrimitives.ReadUInt32BigEndian(s);
}
