namespace Restream.Media.Rtmp;

/// <summary>RTMP message type ids (RTMP specification 5.4 and 7.1).</summary>
public static class RtmpMessageType
{
    public const byte SetChunkSize = 1;
    public const byte Abort = 2;
    public const byte Acknowledgement = 3;
    public const byte UserControl = 4;
    public const byte WindowAcknowledgementSize = 5;
    public const byte SetPeerBandwidth = 6;
    public const byte Audio = 8;
    public const byte Video = 9;
    public const byte DataAmf3 = 15;
    public const byte SharedObjectAmf3 = 16;
    public const byte CommandAmf3 = 17;
    public const byte DataAmf0 = 18;
    public const byte SharedObjectAmf0 = 19;
    public const byte CommandAmf0 = 20;
    public const byte Aggregate = 22;
}

/// <summary>User control event types (RTMP specification 7.1.7).</summary>
public enum UserControlEvent : ushort
{
    StreamBegin = 0,
    StreamEof = 1,
    StreamDry = 2,
    SetBufferLength = 3,
    StreamIsRecorded = 4,
    PingRequest = 6,
    PingResponse = 7,
}

/// <summary>Chunk stream ids we use when sending; peers are free to use others.</summary>
public static class RtmpChunkStreams
{
    public const int ProtocolControl = 2;
    public const int Command = 3;
    public const int Audio = 4;
    public const int Data = 5;
    public const int Video = 6;
}

/// <summary>A malformed or out-of-limits RTMP stream; the connection that sent it is closed.</summary>
public sealed class RtmpProtocolException(string message) : Exception(message);
