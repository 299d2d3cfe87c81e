using System.Buffers;
using Restream.Ingest.Hub;
using Restream.Media.Amf;
using Restream.Media.Codecs;
using Restream.Media.Flv;
using Restream.Media.Rtmp;
using Restream.Tests;

namespace Restream.Media.Tests;

/// <summary>
/// Mutation fuzzing of everything that reads a publisher's bytes: a real ffmpeg publish session
/// (Fixtures/ffmpeg-publish.c2s.bin) is damaged at random (bits flipped, bytes set to edge values,
/// lengths and sizes overwritten, ranges cut, copied or inserted) and read the way a connection reads
/// it: chunk streams, Set Chunk Size, commands, metadata, aggregates, sequence headers into the hub and
/// a subscriber. Damage may only ever end in a protocol error (what the session answers with a clean
/// close); any other exception is a bug that would have ended the session without a word.
/// Seeded, so a failure names the seed and mutation that reproduce it.
/// </summary>
public sealed class MutationFuzzTests
{
    private static readonly byte[] Session = FixtureReader.Load("ffmpeg-publish.c2s.bin")[FixtureReader.HandshakeClientBytes..];

    public static TheoryData<int> Seeds => [1, 2, 3, 4];

    [Theory]
    [MemberData(nameof(Seeds))]
    public void Damaged_publish_sessions_end_only_in_protocol_errors(int seed)
    {
        var random = new Random(seed);
        var endings = new Dictionary<string, int>();
        var outstanding = MediaFrame.Outstanding;
        for (var i = 0; i < 1500; i++)
        {
            var (bytes, what) = ByteMutator.Mutate(Session, random);
            string ending;
            try
            {
                var messages = ReadSession(bytes, random.Next(4) == 0 ? random.Next(1, 600) : bytes.Length);
                ending = $"read to the end ({(messages > 0 ? "messages" : "none")})";
            }
            catch (Exception e) when (e is RtmpProtocolException or AmfException or FormatException)
            {
                ending = e.GetType().Name;
            }
            catch (Exception e)
            {
                Assert.Fail($"seed {seed}, mutation {i} ({what}): {e.GetType().Name}: {e.Message}\n{e.StackTrace}");
                throw;
            }

            endings[ending] = endings.GetValueOrDefault(ending) + 1;
        }

        Assert.Equal(outstanding, MediaFrame.Outstanding); // however a session ended, its frames went back to the pool

        // The damage reached the parsers: some sessions fail, some read through.
        Assert.True(endings.Keys.Count(k => !k.StartsWith("read", StringComparison.Ordinal)) >= 2, string.Join(", ", endings));
        Assert.Contains(endings.Keys, k => k.StartsWith("read", StringComparison.Ordinal));
    }

    /// <summary>
    /// The same damage inside one message's body at a time (the chunking left intact), so that it reaches
    /// the AMF reader, the commands, the metadata and the codec configuration parsers behind the hub.
    /// </summary>
    [Theory]
    [MemberData(nameof(Seeds))]
    public void Damaged_message_bodies_end_only_in_protocol_errors(int seed)
    {
        var messages = FixtureReader.ReadAll(Session).Where(m => m.TypeId is not RtmpMessageType.SetChunkSize).ToList();
        var random = new Random(seed);
        var endings = new Dictionary<string, int>();
        for (var i = 0; i < 3000; i++)
        {
            // Mostly the session's first messages (commands, metadata, sequence headers), sometimes any.
            var index = random.Next(3) > 0 ? random.Next(Math.Min(12, messages.Count)) : random.Next(messages.Count);
            var original = messages[index];
            var (body, what) = ByteMutator.Mutate(original.Body, random);
            var (hub, queue) = OpenHub();
            string ending;
            try
            {
                // The stream's own sequence headers first, so damaged media meets a configured hub.
                foreach (var header in messages.Take(index).Where(m => m.TypeId is RtmpMessageType.Audio or RtmpMessageType.Video))
                {
                    Handle(hub, header.TypeId, header.Timestamp, header.Body);
                }

                Handle(hub, original.TypeId, original.Timestamp, body);
                ending = "read";
            }
            catch (Exception e) when (e is RtmpProtocolException or AmfException or FormatException)
            {
                ending = e.GetType().Name;
            }
            catch (Exception e)
            {
                Assert.Fail($"seed {seed}, mutation {i} of message {index} (type {original.TypeId}: {what}): {e.GetType().Name}: {e.Message}\n{e.StackTrace}");
                throw;
            }
            finally
            {
                Close(hub, queue);
            }

            endings[$"{original.TypeId}: {ending}"] = endings.GetValueOrDefault($"{original.TypeId}: {ending}") + 1;
        }

        // Every kind was damaged both ways: commands and metadata into AMF errors and through, media through.
        var summary = string.Join(", ", endings);
        foreach (var kind in new[] { RtmpMessageType.CommandAmf0, RtmpMessageType.DataAmf0 })
        {
            Assert.True(endings.GetValueOrDefault($"{kind}: AmfException") > 0 && endings.GetValueOrDefault($"{kind}: read") > 0, summary);
        }

        Assert.True(endings.GetValueOrDefault($"{RtmpMessageType.Video}: read") > 0 && endings.GetValueOrDefault($"{RtmpMessageType.Audio}: read") > 0, summary);
    }

    /// <summary>
    /// Damaged sequence headers: the figures the hub shows (API, metrics, webhooks) and the transcoder
    /// plans its ladder from are ones a real encoder could send, or the parser refuses the header.
    /// </summary>
    [Fact]
    public void Damaged_sequence_headers_give_possible_figures_or_a_format_error()
    {
        var messages = FixtureReader.ReadAll(Session);
        var video = messages.First(m => m.TypeId == RtmpMessageType.Video).Body;
        var audio = messages.First(m => m.TypeId == RtmpMessageType.Audio).Body;
        Assert.True(FlvMedia.IsVideoSequenceHeader(video) && FlvMedia.IsAudioSequenceHeader(audio));
        var random = new Random(5);
        int videoRead = 0, videoRefused = 0, audioRead = 0, audioRefused = 0;
        for (var i = 0; i < 20000; i++)
        {
            var (v, vWhat) = ByteMutator.Mutate(video, random);
            try
            {
                var record = AvcDecoderConfigurationRecord.Parse(v.AsSpan(Math.Min(5, v.Length)));
                if (record.SequenceParameterSets.Count > 0)
                {
                    var sps = SequenceParameterSet.Parse(record.SequenceParameterSets[0]);
                    Assert.True(sps.Width is >= 1 and <= 16880 && sps.Height is >= 1 and <= 16880 && sps.FrameRate is null or (>= 1 and <= 480),
                        $"{vWhat}: {sps}");
                    videoRead++;
                }
            }
            catch (FormatException)
            {
                videoRefused++;
            }

            var (a, aWhat) = ByteMutator.Mutate(audio, random);
            try
            {
                var asc = AudioSpecificConfig.Parse(a.AsSpan(Math.Min(2, a.Length)));
                Assert.True(asc.SampleRate is >= 1 and <= 96000 && asc.Channels is >= 0 and <= 24, $"{aWhat}: {asc}");
                audioRead++;
            }
            catch (FormatException)
            {
                audioRefused++;
            }
        }

        Assert.True(videoRead > 1000 && videoRefused > 1000 && audioRead > 1000 && audioRefused > 1000, $"{videoRead} {videoRefused} {audioRead} {audioRefused}");
    }

    /// <summary>
    /// An SRT publisher's MPEG-TS (Fixtures/h264-aac.ts, made by ffmpeg) damaged the same way, fed in
    /// datagram-sized pieces as the SRT ingest does: the demuxer resynchronises and never throws, and
    /// every frame it gives is well formed (AVCC NAL lengths add up) and goes into the hub.
    /// </summary>
    [Theory]
    [MemberData(nameof(Seeds))]
    public void Damaged_transport_streams_demux_without_an_exception(int seed)
    {
        var ts = FixtureReader.Load("h264-aac.ts");
        var random = new Random(seed);
        var outstanding = MediaFrame.Outstanding;
        long frames = 0, errors = 0;
        for (var i = 0; i < 300; i++)
        {
            var (bytes, what) = ByteMutator.Mutate(ts, random, head: ts.Length);
            var (hub, queue) = OpenHub();
            var demuxer = new Restream.Media.Ts.TsDemuxer(hub.Publish);
            try
            {
                for (var offset = 0; offset < bytes.Length; offset += 1316)
                {
                    demuxer.Feed(bytes.AsSpan(offset, Math.Min(1316, bytes.Length - offset)));
                    while (queue.TryDequeue(out var frame))
                    {
                        var body = frame.Payload.Span;
                        if (frame.Kind == MediaKind.Video && !frame.IsSequenceHeader)
                        {
                            var pos = 5;
                            while (pos + 4 <= body.Length)
                            {
                                pos += 4 + (int)BigEndian.ReadUInt32(body[pos..]);
                            }

                            Assert.True(pos == body.Length, $"mutation {i} ({what}): a video frame's NAL lengths do not add up");
                        }

                        frames++;
                        frame.Release();
                    }
                }

                demuxer.Flush();
                errors += demuxer.ContinuityErrors;
            }
            catch (Exception e) when (e is not Xunit.Sdk.XunitException)
            {
                Assert.Fail($"seed {seed}, mutation {i} ({what}): {e.GetType().Name}: {e.Message}\n{e.StackTrace}");
            }
            finally
            {
                Close(hub, queue);
            }
        }

        Assert.Equal(outstanding, MediaFrame.Outstanding);
        Assert.True(frames > 300 * 30 && errors > 0, $"{frames} frames, {errors} continuity errors"); // damage was seen, and most frames still came
    }

    /// <summary>
    /// The relay's MPEG-TS muxer (SRT destinations) fed a publisher's frames, some damaged (sequence
    /// headers included): it never throws, since an exception there would end the destination's pusher,
    /// and what it writes demuxes.
    /// </summary>
    [Theory]
    [MemberData(nameof(Seeds))]
    public void Damaged_frames_mux_to_TS_without_an_exception(int seed)
    {
        var frames = FixtureReader.ReadAll(Session).Where(m => m.TypeId is RtmpMessageType.Audio or RtmpMessageType.Video).ToList();
        var random = new Random(seed);
        for (var i = 0; i < 40; i++)
        {
            var muxer = new Restream.Media.Ts.TsMuxer();
            var output = new ArrayBufferWriter<byte>();
            var damage = new List<string>();
            foreach (var (m, index) in frames.Select((m, index) => (m, index)))
            {
                var body = m.Body;
                // Every other run damages the sequence headers too (then audio or video may stay out to the end, by design).
                if (index < 2 ? i % 2 == 1 && random.Next(2) == 0 : random.Next(10) == 0)
                {
                    (body, var what) = ByteMutator.Mutate(m.Body, random, head: 16);
                    damage.Add($"frame {index}: {what}");
                }

                var frame = MediaFrame.Copy((MediaKind)m.TypeId, m.Timestamp, body);
                try
                {
                    muxer.Write(frame, output);
                }
                catch (Exception e)
                {
                    Assert.Fail($"seed {seed}, run {i}, frame {index}: {e.GetType().Name}: {e.Message}\n{string.Join("; ", damage)}\n{e.StackTrace}");
                }
                finally
                {
                    frame.Release();
                }
            }

            var demuxed = 0;
            var demuxer = new Restream.Media.Ts.TsDemuxer(f =>
            {
                demuxed++;
                f.Release();
            });
            demuxer.Feed(output.WrittenSpan);
            demuxer.Flush();
            if (i % 2 == 0)
            {
                Assert.True(demuxed > frames.Count / 2, $"{demuxed} of {frames.Count} frames came back: {string.Join("; ", damage)}");
            }
        }
    }

    /// <summary>Reads a session as <c>RtmpServerSession</c> does, handing bytes over in pieces; returns the messages read.</summary>
    private static int ReadSession(byte[] bytes, int piece)
    {
        using var reader = new ChunkStreamReader();
        var (hub, queue) = OpenHub();
        var count = 0;
        var buffered = 0;
        var consumed = 0;
        try
        {
            while (consumed < bytes.Length)
            {
                buffered = Math.Min(bytes.Length, buffered + piece);
                var sequence = new SequenceReader<byte>(new ReadOnlySequence<byte>(bytes, consumed, buffered - consumed));
                while (reader.TryReadMessage(ref sequence, out var message))
                {
                    using (message)
                    {
                        count++;
                        if (message.TypeId == RtmpMessageType.SetChunkSize)
                        {
                            reader.SetChunkSize(ProtocolControl.ReadUInt32Body(message.Span));
                        }

                        Handle(hub, message.TypeId, message.Timestamp, message.Payload);
                    }

                    while (queue.TryDequeue(out var frame))
                    {
                        frame.Release();
                    }
                }

                consumed += (int)sequence.Consumed;
                if (buffered == bytes.Length)
                {
                    break; // a cut-off last chunk stays unread, as on a connection that closes
                }
            }
        }
        finally
        {
            Close(hub, queue);
        }

        return count;
    }

    private static (StreamHub Hub, FrameQueue Queue) OpenHub()
    {
        var hub = new StreamHub("c1", "main", "127.0.0.1:1", TimeProvider.System);
        return (hub, hub.Subscribe());
    }

    /// <summary>Ends the stream: what the subscriber did not take goes back to the pool with the hub's own frames.</summary>
    private static void Close(StreamHub hub, FrameQueue queue)
    {
        while (queue.TryDequeue(out var frame))
        {
            frame.Release();
        }

        hub.Unsubscribe(queue);
        hub.End();
    }

    /// <summary>What the session does with a message's body.</summary>
    private static void Handle(StreamHub hub, byte typeId, uint timestamp, ReadOnlyMemory<byte> payload)
    {
        switch (typeId)
        {
            case RtmpMessageType.CommandAmf0:
                RtmpCommand.Parse(payload);
                break;
            case RtmpMessageType.CommandAmf3:
                if (payload.Length > 0)
                {
                    RtmpCommand.Parse(payload[1..]);
                }

                break;
            case RtmpMessageType.DataAmf0:
                var amf = new AmfReader(payload);
                var name = amf.ReadValue() as string;
                if (name == "@setDataFrame")
                {
                    name = amf.ReadValue() as string;
                }

                if (name == "onMetaData" && !amf.End && amf.ReadValue() is AmfObject metadata)
                {
                    hub.SetMetadata(StreamHub.CreateMetadataFrame(timestamp, metadata), metadata);
                }

                break;
            case RtmpMessageType.Audio or RtmpMessageType.Video when payload.Length > 0:
                hub.Publish(MediaFrame.Copy((MediaKind)typeId, timestamp, payload.Span));
                break;
            case RtmpMessageType.Aggregate:
                var tags = new SequenceReader<byte>(new ReadOnlySequence<byte>(payload));
                while (FlvReader.TryReadTag(ref tags, out var header, out var body))
                {
                    if (header.Type is FlvTagType.Audio or FlvTagType.Video && body.Length > 0)
                    {
                        hub.Publish(MediaFrame.Copy((MediaKind)header.Type, header.Timestamp, body.ToArray()));
                    }
                }

                break;
        }
    }
}
