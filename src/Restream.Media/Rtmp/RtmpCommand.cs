using System.Buffers;
using Restream.Media.Amf;

namespace Restream.Media.Rtmp;

/// <summary>
/// An AMF0 command message (RTMP 7.1.1, 7.2): a name, a transaction id, a command object and
/// arguments. Used for connect, createStream, publish, play, onStatus, _result and the rest.
/// </summary>
public sealed record RtmpCommand(string Name, double TransactionId, object? CommandObject, IReadOnlyList<object?> Arguments)
{
    /// <summary>The most arguments a command may carry; real ones have at most a handful.</summary>
    public const int MaxArguments = 32;

    public static RtmpCommand Parse(ReadOnlyMemory<byte> body) => Parse(new ReadOnlySequence<byte>(body));

    public static RtmpCommand Parse(ReadOnlySequence<byte> body)
    {
        var reader = new AmfReader(body);
        var name = reader.ReadValue() as string ?? throw new AmfException("command name is not a string");
        var transactionId = reader.End ? 0 : reader.ReadValue() is double d ? d : 0;
        var commandObject = reader.End ? null : reader.ReadValue();
        var args = new List<object?>();
        while (!reader.End)
        {
            if (args.Count == MaxArguments)
            {
                throw new AmfException($"command {name} has more than {MaxArguments} arguments");
            }

            args.Add(reader.ReadValue());
        }

        return new RtmpCommand(name, transactionId, commandObject, args);
    }

    public string? StringArgument(int index) => index < Arguments.Count ? Arguments[index] as string : null;

    public void WriteBody(IBufferWriter<byte> output)
    {
        AmfWriter.WriteString(output, Name);
        AmfWriter.WriteNumber(output, TransactionId);
        AmfWriter.WriteValue(output, CommandObject);
        foreach (var arg in Arguments)
        {
            AmfWriter.WriteValue(output, arg);
        }
    }

    /// <summary>Chunks this command onto the command chunk stream of message stream <paramref name="streamId"/>.</summary>
    public void Write(IBufferWriter<byte> output, int chunkSize, uint streamId)
    {
        var body = new ArrayBufferWriter<byte>(256);
        WriteBody(body);
        ChunkStreamWriter.WriteMessage(output, chunkSize, RtmpChunkStreams.Command, RtmpMessageType.CommandAmf0, 0, streamId, body.WrittenSpan);
    }

    public static RtmpCommand OnStatus(string level, string code, string description, AmfObject? extra = null)
    {
        var info = new AmfObject { { "level", level }, { "code", code }, { "description", description } };
        if (extra is not null)
        {
            foreach (var (key, value) in extra)
            {
                info[key] = value;
            }
        }

        return new RtmpCommand("onStatus", 0, null, [info]);
    }
}

/// <summary>NetConnection and NetStream status codes used in onStatus and _result/_error.</summary>
public static class RtmpStatus
{
    public const string ConnectSuccess = "NetConnection.Connect.Success";
    public const string ConnectRejected = "NetConnection.Connect.Rejected";
    public const string PublishStart = "NetStream.Publish.Start";
    public const string PublishBadName = "NetStream.Publish.BadName";
    public const string UnpublishSuccess = "NetStream.Unpublish.Success";
    public const string PlayReset = "NetStream.Play.Reset";
    public const string PlayStart = "NetStream.Play.Start";
    public const string PlayStreamNotFound = "NetStream.Play.StreamNotFound";
    public const string PlayUnpublishNotify = "NetStream.Play.UnpublishNotify";
    public const string PlayPublishNotify = "NetStream.Play.PublishNotify";
}
