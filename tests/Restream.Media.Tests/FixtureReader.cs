using System.Buffers;
using Restream.Media.Rtmp;

namespace Restream.Media.Tests;

public sealed record ReadMessage(int ChunkStreamId, byte TypeId, uint Timestamp, uint StreamId, byte[] Body);

/// <summary>Reads captured RTMP byte streams (see Fixtures/capture.sh) the way a connection would.</summary>
public static class FixtureReader
{
    public const int HandshakeClientBytes = 1 + 2 * RtmpHandshake.PacketSize; // C0 C1 C2
    public const int HandshakeServerBytes = 1 + 2 * RtmpHandshake.PacketSize; // S0 S1 S2

    public static byte[] Load(string name) => File.ReadAllBytes(Path.Combine(AppContext.BaseDirectory, "Fixtures", name));

    /// <summary>
    /// Parses messages from <paramref name="data"/>, feeding it in pieces of the given sizes (the
    /// way TCP delivers it), and applies Set Chunk Size as a connection does. A trailing partial chunk
    /// (capture cut mid-stream) is left unread.
    /// </summary>
    public static List<ReadMessage> ReadAll(ReadOnlyMemory<byte> data, Func<int>? pieceSize = null)
    {
        using var reader = new ChunkStreamReader();
        var messages = new List<ReadMessage>();
        var pending = new List<byte>();
        var offset = 0;
        while (offset < data.Length)
        {
            var take = Math.Min(pieceSize?.Invoke() ?? data.Length, data.Length - offset);
            pending.AddRange(data.Slice(offset, take).ToArray());
            offset += take;
            var buffer = new ReadOnlySequence<byte>(pending.ToArray());
            var sequence = new SequenceReader<byte>(buffer);
            while (reader.TryReadMessage(ref sequence, out var message))
            {
                using (message)
                {
                    if (message.TypeId == RtmpMessageType.SetChunkSize)
                    {
                        reader.SetChunkSize(ProtocolControl.ReadUInt32Body(message.Span));
                    }

                    messages.Add(new ReadMessage(message.ChunkStreamId, message.TypeId, message.Timestamp, message.StreamId, message.Span.ToArray()));
                }
            }

            pending.RemoveRange(0, (int)sequence.Consumed);
        }

        return messages;
    }
}
