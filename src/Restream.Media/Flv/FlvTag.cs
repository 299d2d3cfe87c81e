using System.Buffers;
using System.Buffers.Binary;

namespace Restream.Media.Flv;

/// <summary>FLV tag types; they equal the RTMP message types of the same media.</summary>
public enum FlvTagType : byte
{
    Audio = 8,
    Video = 9,
    Script = 18,
}

/// <summary>What the first bytes of an FLV/RTMP video or audio body say (FLV spec E.4.2, E.4.3; Enhanced RTMP).</summary>
public static class FlvMedia
{
    public const int AvcCodecId = 7;
    public const int HevcCodecId = 12;
    public const int AacSoundFormat = 10;

    /// <summary>Frame type 1 is a keyframe (also in Enhanced RTMP, where bit 7 marks the extended header).</summary>
    public static bool IsVideoKeyframe(ReadOnlySpan<byte> body) => body.Length > 0 && (body[0] >> 4 & 7) == 1;

    public static bool IsVideoSequenceHeader(ReadOnlySpan<byte> body)
    {
        if (body.Length < 2)
        {
            return false;
        }

        if ((body[0] & 0x80) != 0)
        {
            // Enhanced RTMP: the low nibble is the packet type; 0 is SequenceStart.
            return (body[0] & 0x0F) == 0;
        }

        var codec = body[0] & 0x0F;
        return codec is AvcCodecId or HevcCodecId && body[1] == 0;
    }

    public static bool IsAudioSequenceHeader(ReadOnlySpan<byte> body) =>
        body.Length >= 2 && body[0] >> 4 == AacSoundFormat && body[1] == 0;

    public static int VideoCodecId(ReadOnlySpan<byte> body) => body.Length > 0 ? body[0] & 0x0F : -1;

    public static int SoundFormat(ReadOnlySpan<byte> body) => body.Length > 0 ? body[0] >> 4 : -1;
}

/// <summary>One FLV tag header (FLV spec E.4.1): type, body size and the 32-bit timestamp.</summary>
public readonly record struct FlvTagHeader(FlvTagType Type, int DataSize, uint Timestamp)
{
    public const int Size = 11;
}

/// <summary>Reads an FLV byte stream (what ffmpeg writes with <c>-f flv</c> to a pipe) tag by tag.</summary>
public static class FlvReader
{
    public const int FileHeaderSize = 9;

    /// <summary>Reads the 9-byte file header and the first PreviousTagSize0.</summary>
    public static bool TryReadFileHeader(ref SequenceReader<byte> reader, out bool hasAudio, out bool hasVideo)
    {
        hasAudio = hasVideo = false;
        if (reader.Remaining < FileHeaderSize + 4)
        {
            return false;
        }

        Span<byte> header = stackalloc byte[FileHeaderSize];
        reader.TryCopyTo(header);
        if (header[0] != 'F' || header[1] != 'L' || header[2] != 'V')
        {
            throw new FormatException("not an FLV stream (no FLV signature)");
        }

        hasAudio = (header[4] & 4) != 0;
        hasVideo = (header[4] & 1) != 0;
        var dataOffset = (int)BinaryPrimitives.ReadUInt32BigEndian(header[5..]);
        if (dataOffset < FileHeaderSize || reader.Remaining < dataOffset + 4)
        {
            return false;
        }

        reader.Advance(dataOffset + 4);
        return true;
    }

    /// <summary>Tries to take one whole tag (header, body, PreviousTagSize). Consumes nothing otherwise.</summary>
    public static bool TryReadTag(ref SequenceReader<byte> reader, out FlvTagHeader header, out ReadOnlySequence<byte> body)
    {
        header = default;
        body = default;
        if (reader.Remaining < FlvTagHeader.Size)
        {
            return false;
        }

        Span<byte> h = stackalloc byte[FlvTagHeader.Size];
        reader.TryCopyTo(h);
        var type = (FlvTagType)(h[0] & 0x1F);
        if ((h[0] & 0x20) != 0)
        {
            throw new FormatException("encrypted FLV tags are not supported");
        }

        var size = h[1] << 16 | h[2] << 8 | h[3];
        var timestamp = (uint)(h[4] << 16 | h[5] << 8 | h[6]) | (uint)h[7] << 24;
        if (reader.Remaining < FlvTagHeader.Size + size + 4)
        {
            return false;
        }

        reader.Advance(FlvTagHeader.Size);
        body = reader.UnreadSequence.Slice(0, size);
        reader.Advance(size + 4);
        header = new FlvTagHeader(type, size, timestamp);
        return true;
    }

    /// <summary>Writes an FLV file header announcing audio and video.</summary>
    public static void WriteFileHeader(IBufferWriter<byte> output, bool audio, bool video)
    {
        var span = output.GetSpan(FileHeaderSize + 4);
        "FLV"u8.CopyTo(span);
        span[3] = 1;
        span[4] = (byte)((audio ? 4 : 0) | (video ? 1 : 0));
        BinaryPrimitives.WriteUInt32BigEndian(span[5..], FileHeaderSize);
        BinaryPrimitives.WriteUInt32BigEndian(span[9..], 0);
        output.Advance(FileHeaderSize + 4);
    }

    public static void WriteTag(IBufferWriter<byte> output, FlvTagType type, uint timestamp, ReadOnlySpan<byte> body)
    {
        var total = FlvTagHeader.Size + body.Length + 4;
        var span = output.GetSpan(total);
        span[0] = (byte)type;
        span[1] = (byte)(body.Length >> 16);
        span[2] = (byte)(body.Length >> 8);
        span[3] = (byte)body.Length;
        span[4] = (byte)(timestamp >> 16);
        span[5] = (byte)(timestamp >> 8);
        span[6] = (byte)timestamp;
        span[7] = (byte)(timestamp >> 24);
        span[8] = span[9] = span[10] = 0;
        body.CopyTo(span[FlvTagHeader.Size..]);
        BinaryPrimitives.WriteUInt32BigEndian(span[(FlvTagHeader.Size + body.Length)..], (uint)(FlvTagHeader.Size + body.Length));
        output.Advance(total);
    }
}
