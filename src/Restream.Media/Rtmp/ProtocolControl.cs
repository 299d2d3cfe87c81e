using System.Buffers;
using System.Buffers.Binary;

namespace Restream.Media.Rtmp;

/// <summary>Builds and parses the protocol control and user control messages (RTMP 5.4, 6.2).</summary>
public static class ProtocolControl
{
    public static void WriteSetChunkSize(IBufferWriter<byte> output, int chunkSize) =>
        WriteUInt32Message(output, RtmpMessageType.SetChunkSize, (uint)chunkSize);

    public static void WriteAcknowledgement(IBufferWriter<byte> output, uint sequenceNumber) =>
        WriteUInt32Message(output, RtmpMessageType.Acknowledgement, sequenceNumber);

    public static void WriteWindowAcknowledgementSize(IBufferWriter<byte> output, uint size) =>
        WriteUInt32Message(output, RtmpMessageType.WindowAcknowledgementSize, size);

    public static void WriteAbort(IBufferWriter<byte> output, int chunkStreamId) =>
        WriteUInt32Message(output, RtmpMessageType.Abort, (uint)chunkStreamId);

    /// <summary>Set Peer Bandwidth; limit type 2 is "dynamic".</summary>
    public static void WriteSetPeerBandwidth(IBufferWriter<byte> output, uint size, byte limitType)
    {
        Span<byte> body = stackalloc byte[5];
        BinaryPrimitives.WriteUInt32BigEndian(body, size);
        body[4] = limitType;
        ChunkStreamWriter.WriteMessage(output, 128, RtmpChunkStreams.ProtocolControl, RtmpMessageType.SetPeerBandwidth, 0, 0, body);
    }

    public static void WriteUserControl(IBufferWriter<byte> output, UserControlEvent type, uint value)
    {
        Span<byte> body = stackalloc byte[6];
        BinaryPrimitives.WriteUInt16BigEndian(body, (ushort)type);
        BinaryPrimitives.WriteUInt32BigEndian(body[2..], value);
        ChunkStreamWriter.WriteMessage(output, 128, RtmpChunkStreams.ProtocolControl, RtmpMessageType.UserControl, 0, 0, body);
    }

    /// <summary>Reads the 32-bit value of Set Chunk Size, Abort, Acknowledgement or Window Ack Size.</summary>
    public static uint ReadUInt32Body(ReadOnlySpan<byte> body)
    {
        if (body.Length < 4)
        {
            throw new RtmpProtocolException($"control message of {body.Length} bytes is too short");
        }

        return BinaryPrimitives.ReadUInt32BigEndian(body);
    }

    public static (UserControlEvent Type, uint Value) ReadUserControl(ReadOnlySpan<byte> body)
    {
        if (body.Length < 2)
        {
            throw new RtmpProtocolException("user control message is too short");
        }

        var type = (UserControlEvent)BinaryPrimitives.ReadUInt16BigEndian(body);
        var value = body.Length >= 6 ? BinaryPrimitives.ReadUInt32BigEndian(body[2..]) : 0;
        return (type, value);
    }

    private static void WriteUInt32Message(IBufferWriter<byte> output, byte type, uint value)
    {
        Span<byte> body = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(body, value);
        // Control messages go on chunk stream 2, message stream 0 (5.4); they fit any chunk size.
        ChunkStreamWriter.WriteMessage(output, 128, RtmpChunkStreams.ProtocolControl, type, 0, 0, body);
    }
}
