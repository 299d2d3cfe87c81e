using System.Buffers;
using System.Buffers.Binary;

namespace Restream.Media.Rtmp;

/// <summary>
/// Splits messages into chunks. Every message starts with a type 0 header (absolute timestamp)
/// and continues with type 3 headers, so its chunked bytes depend only on the message and the
/// chunk size: that is what lets one chunked copy serve every connection (ARCHITECTURE, step 4).
/// </summary>
public static class ChunkStreamWriter
{
    /// <summary>Bytes the chunked form of a message of <paramref name="length"/> bytes takes.</summary>
    public static int GetChunkedLength(int chunkStreamId, uint timestamp, int length, int chunkSize)
    {
        var basic = BasicHeaderLength(chunkStreamId);
        var extended = timestamp >= 0xFFFFFF ? 4 : 0;
        var chunks = Math.Max(1, (length + chunkSize - 1) / chunkSize);
        return basic + 11 + extended + (chunks - 1) * (basic + extended) + length;
    }

    public static void WriteMessage(
        IBufferWriter<byte> output, int chunkSize, int chunkStreamId, byte typeId, uint timestamp, uint streamId,
        ReadOnlySpan<byte> payload)
    {
        var total = GetChunkedLength(chunkStreamId, timestamp, payload.Length, chunkSize);
        var span = output.GetSpan(total);
        var written = WriteMessage(span, chunkSize, chunkStreamId, typeId, timestamp, streamId, payload);
        output.Advance(written);
    }

    /// <summary>Writes the chunked message into <paramref name="destination"/>; returns the bytes written.</summary>
    public static int WriteMessage(
        Span<byte> destination, int chunkSize, int chunkStreamId, byte typeId, uint timestamp, uint streamId,
        ReadOnlySpan<byte> payload)
    {
        if (chunkSize <= 0)
        {
            throw new ArgumentOutOfRangeException(nameof(chunkSize));
        }

        if (payload.Length > 0xFFFFFF)
        {
            throw new ArgumentException("RTMP messages are limited to 16 MiB", nameof(payload));
        }

        var extended = timestamp >= 0xFFFFFF;
        var pos = WriteBasicHeader(destination, 0, chunkStreamId);
        BigEndian.WriteUInt24(destination[pos..], extended ? 0xFFFFFF : timestamp);
        BigEndian.WriteUInt24(destination[(pos + 3)..], (uint)payload.Length);
        destination[pos + 6] = typeId;
        BinaryPrimitives.WriteUInt32LittleEndian(destination[(pos + 7)..], streamId);
        pos += 11;
        if (extended)
        {
            BinaryPrimitives.WriteUInt32BigEndian(destination[pos..], timestamp);
            pos += 4;
        }

        var offset = 0;
        while (true)
        {
            var take = Math.Min(chunkSize, payload.Length - offset);
            payload.Slice(offset, take).CopyTo(destination[pos..]);
            pos += take;
            offset += take;
            if (offset >= payload.Length)
            {
                return pos;
            }

            pos += WriteBasicHeader(destination[pos..], 3, chunkStreamId) - 0;
            if (extended)
            {
                // FFmpeg, librtmp and nginx-rtmp repeat the extended timestamp on type 3 chunks.
                BinaryPrimitives.WriteUInt32BigEndian(destination[pos..], timestamp);
                pos += 4;
            }
        }
    }

    private static int BasicHeaderLength(int csid) => csid < 64 ? 1 : csid < 320 ? 2 : 3;

    private static int WriteBasicHeader(Span<byte> destination, int fmt, int csid)
    {
        if (csid is < 2 or > 65599)
        {
            throw new ArgumentOutOfRangeException(nameof(csid));
        }

        if (csid < 64)
        {
            destination[0] = (byte)(fmt << 6 | csid);
            return 1;
        }

        if (csid < 320)
        {
            destination[0] = (byte)(fmt << 6);
            destination[1] = (byte)(csid - 64);
            return 2;
        }

        destination[0] = (byte)(fmt << 6 | 1);
        destination[1] = (byte)((csid - 64) & 0xFF);
        destination[2] = (byte)((csid - 64) >> 8);
        return 3;
    }
}
