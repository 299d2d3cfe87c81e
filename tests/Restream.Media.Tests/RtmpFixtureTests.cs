using Restream.Media.Amf;
using Restream.Media.Codecs;
using Restream.Media.Flv;
using Restream.Media.Rtmp;

namespace Restream.Media.Tests;

/// <summary>Parsing byte streams captured from real ffmpeg and nginx-rtmp sessions (Fixtures/capture.sh).</summary>
public sealed class RtmpFixtureTests
{
    private static readonly byte[] Publish = FixtureReader.Load("ffmpeg-publish.c2s.bin");
    private static readonly byte[] PublishReplies = FixtureReader.Load("nginx-publish.s2c.bin");
    private static readonly byte[] Play = FixtureReader.Load("nginx-play.s2c.bin");
    private static readonly byte[] ExtendedTimestamps = FixtureReader.Load("ffmpeg-extended-ts.c2s.bin");

    [Fact]
    public void Ffmpeg_C1_carries_a_valid_Flash_Player_digest()
    {
        Assert.Equal(RtmpHandshake.Version, Publish[0]);
        Assert.True(RtmpHandshake.FindClientDigest(Publish.AsSpan(1, RtmpHandshake.PacketSize)) >= 0);
    }

    [Fact]
    public void Nginx_answers_the_digest_handshake_with_a_server_digest_and_a_signed_S2_we_can_verify()
    {
        var c1 = Publish.AsSpan(1, RtmpHandshake.PacketSize);
        var s1 = PublishReplies.AsSpan(1, RtmpHandshake.PacketSize);
        var s2 = PublishReplies.AsSpan(1 + RtmpHandshake.PacketSize, RtmpHandshake.PacketSize);
        Assert.True(RtmpHandshake.FindServerDigest(s1) >= 0);
        Assert.True(RtmpHandshake.ValidateServerS2(c1, s2));
    }

    [Fact]
    public void Our_S2_for_ffmpegs_C1_validates_as_nginxs_does()
    {
        var c1 = Publish.AsSpan(1, RtmpHandshake.PacketSize);
        var reply = new byte[1 + 2 * RtmpHandshake.PacketSize];
        RtmpHandshake.WriteS0S1S2(c1, reply, 1234);
        Assert.True(RtmpHandshake.FindServerDigest(reply.AsSpan(1, RtmpHandshake.PacketSize)) >= 0);
        Assert.True(RtmpHandshake.ValidateServerS2(c1, reply.AsSpan(1 + RtmpHandshake.PacketSize)));

        // And a corrupted S2 does not.
        reply[^1] ^= 0xFF;
        Assert.False(RtmpHandshake.ValidateServerS2(c1, reply.AsSpan(1 + RtmpHandshake.PacketSize)));
    }

    [Fact]
    public void Simple_C1_gets_an_echo_S2()
    {
        var c0c1 = new byte[1 + RtmpHandshake.PacketSize];
        RtmpHandshake.WriteC0C1(c0c1, 0, digest: false);
        Assert.Equal(-1, RtmpHandshake.FindClientDigest(c0c1.AsSpan(1)));
        var reply = new byte[1 + 2 * RtmpHandshake.PacketSize];
        RtmpHandshake.WriteS0S1S2(c0c1.AsSpan(1), reply, 0);
        Assert.Equal(c0c1.AsSpan(1).ToArray(), reply.AsSpan(1 + RtmpHandshake.PacketSize).ToArray());
    }

    [Fact]
    public void Ffmpeg_publish_session_parses_into_the_OBS_style_command_sequence()
    {
        var messages = FixtureReader.ReadAll(Publish.AsMemory(FixtureReader.HandshakeClientBytes));
        var commands = messages.Where(m => m.TypeId == RtmpMessageType.CommandAmf0).Select(m => RtmpCommand.Parse(m.Body)).ToList();
        Assert.Equal(["connect", "releaseStream", "FCPublish", "createStream", "publish"], commands.Take(5).Select(c => c.Name));
        var connect = commands[0];
        Assert.Equal(1, connect.TransactionId);
        var props = Assert.IsType<AmfObject>(connect.CommandObject);
        Assert.Equal("live", props.GetString("app"));
        Assert.Equal("rtmp://127.0.0.1:19402/live", props.GetString("tcUrl"));
        Assert.Equal("fixture", commands[4].StringArgument(0));
        Assert.Equal("live", commands[4].StringArgument(1));

        // The first chunk size change comes from ffmpeg before its media.
        Assert.Contains(messages, m => m.TypeId == RtmpMessageType.SetChunkSize);
    }

    [Fact]
    public void Ffmpeg_publish_session_carries_metadata_and_decodable_sequence_headers()
    {
        var messages = FixtureReader.ReadAll(Publish.AsMemory(FixtureReader.HandshakeClientBytes));
        var data = messages.First(m => m.TypeId == RtmpMessageType.DataAmf0);
        var reader = new AmfReader(data.Body);
        Assert.Equal("@setDataFrame", reader.ReadValue());
        Assert.Equal("onMetaData", reader.ReadValue());
        var metadata = Assert.IsAssignableFrom<AmfObject>(reader.ReadValue());
        Assert.Equal(320.0, metadata.GetNumber("width"));
        Assert.Equal(240.0, metadata.GetNumber("height"));
        Assert.Equal(15.0, metadata.GetNumber("framerate"));

        var video = messages.First(m => m.TypeId == RtmpMessageType.Video);
        Assert.True(FlvMedia.IsVideoSequenceHeader(video.Body));
        var record = AvcDecoderConfigurationRecord.Parse(video.Body.AsSpan(5));
        Assert.Equal(4, record.NalLengthSize);
        var sps = SequenceParameterSet.Parse(record.SequenceParameterSets[0]);
        Assert.Equal((320, 240), (sps.Width, sps.Height));
        Assert.Equal(15.0, sps.FrameRate);
        Assert.Single(record.PictureParameterSets);

        var audio = messages.First(m => m.TypeId == RtmpMessageType.Audio);
        Assert.True(FlvMedia.IsAudioSequenceHeader(audio.Body));
        var asc = AudioSpecificConfig.Parse(audio.Body.AsSpan(2));
        Assert.Equal((2, 44100, 1), (asc.ObjectType, asc.SampleRate, asc.Channels));
        Assert.Equal("AAC LC", asc.ProfileName);
    }

    [Fact]
    public void Ffmpeg_publish_session_has_every_video_frame_in_order()
    {
        var messages = FixtureReader.ReadAll(Publish.AsMemory(FixtureReader.HandshakeClientBytes));
        var video = messages.Where(m => m.TypeId == RtmpMessageType.Video).ToList();
        // A sequence header, 3 s at 15 fps of NAL unit packets, and ffmpeg's end-of-sequence packet.
        Assert.Single(video, v => v.Body[1] == 0);
        Assert.Equal(3 * 15, video.Count(v => v.Body[1] == 1));
        Assert.Single(video, v => v.Body[1] == 2);
        Assert.True(video.Zip(video.Skip(1)).All(p => p.First.Timestamp <= p.Second.Timestamp));
        Assert.Equal(3, video.Count(v => FlvMedia.IsVideoKeyframe(v.Body) && v.Body[1] == 1)); // -g 15: one per second
    }

    [Theory]
    [InlineData(1)]
    [InlineData(7)]
    [InlineData(1000)]
    public void Any_split_of_the_byte_stream_gives_the_same_messages(int seed)
    {
        var whole = FixtureReader.ReadAll(Publish.AsMemory(FixtureReader.HandshakeClientBytes));
        var random = new Random(seed);
        var split = FixtureReader.ReadAll(Publish.AsMemory(FixtureReader.HandshakeClientBytes), () => random.Next(1, seed * 3 + 2));
        Assert.Equal(whole.Count, split.Count);
        for (var i = 0; i < whole.Count; i++)
        {
            Assert.Equal((whole[i].TypeId, whole[i].Timestamp, whole[i].StreamId), (split[i].TypeId, split[i].Timestamp, split[i].StreamId));
            Assert.Equal(whole[i].Body, split[i].Body);
        }
    }

    [Fact]
    public void Nginx_replies_to_publish_with_control_messages_result_and_publish_start()
    {
        var messages = FixtureReader.ReadAll(PublishReplies.AsMemory(FixtureReader.HandshakeServerBytes));
        Assert.Contains(messages, m => m.TypeId == RtmpMessageType.WindowAcknowledgementSize);
        Assert.Contains(messages, m => m.TypeId == RtmpMessageType.SetPeerBandwidth);
        var commands = messages.Where(m => m.TypeId == RtmpMessageType.CommandAmf0).Select(m => RtmpCommand.Parse(m.Body)).ToList();
        var result = commands.First(c => c.Name == "_result" && c.TransactionId == 1);
        Assert.Equal(RtmpStatus.ConnectSuccess, Assert.IsType<AmfObject>(result.Arguments[0]).GetString("code"));
        var status = commands.First(c => c.Name == "onStatus");
        Assert.Equal(RtmpStatus.PublishStart, Assert.IsType<AmfObject>(status.Arguments[0]).GetString("code"));
    }

    [Fact]
    public void Nginx_play_stream_with_compressed_headers_and_interleaved_chunks_parses()
    {
        var messages = FixtureReader.ReadAll(Play.AsMemory(FixtureReader.HandshakeServerBytes));
        var video = messages.Where(m => m.TypeId == RtmpMessageType.Video).ToList();
        var audio = messages.Where(m => m.TypeId == RtmpMessageType.Audio).ToList();
        Assert.True(video.Count > 10, $"{video.Count} video messages");
        Assert.True(audio.Count > 10, $"{audio.Count} audio messages");
        Assert.Contains(video, v => FlvMedia.IsVideoSequenceHeader(v.Body));
        Assert.True(video.Zip(video.Skip(1)).All(p => p.First.Timestamp <= p.Second.Timestamp));
        Assert.True(audio.Zip(audio.Skip(1)).All(p => p.First.Timestamp <= p.Second.Timestamp));

        // Every video body is well formed: AVC NAL units whose lengths add up to the body.
        foreach (var v in video.Where(v => !FlvMedia.IsVideoSequenceHeader(v.Body) && v.Body[1] == 1))
        {
            var pos = 5;
            while (pos < v.Body.Length)
            {
                pos += 4 + (int)BigEndian.ReadUInt32(v.Body.AsSpan(pos));
            }

            Assert.Equal(v.Body.Length, pos);
        }
    }

    [Fact]
    public void Extended_timestamps_from_ffmpeg_past_2_to_the_24_ms_are_read()
    {
        var messages = FixtureReader.ReadAll(ExtendedTimestamps.AsMemory(FixtureReader.HandshakeClientBytes));
        var video = messages.Where(m => m.TypeId == RtmpMessageType.Video && m.Body[1] == 1).ToList();
        Assert.Equal(15, video.Count);
        Assert.All(video, v => Assert.InRange(v.Timestamp, 16_800_000u, 16_802_000u));
        Assert.True(video.Zip(video.Skip(1)).All(p => p.Second.Timestamp - p.First.Timestamp is 66 or 67));
    }
}
