using System.Buffers;
using System.Buffers.Binary;
using Restream.Media.Codecs;
using Restream.Media.Flv;

namespace Restream.Media.Ts;

/// <summary>
/// Writes FLV-shaped H.264/AAC frames as an MPEG transport stream, the inverse of <see cref="TsDemuxer"/>:
/// AVCC becomes Annex B with SPS/PPS before every keyframe, raw AAC gets ADTS headers, PAT/PMT are
/// repeated before every keyframe, and the video PID carries the PCR. For SRT destinations.
/// </summary>
public sealed class TsMuxer
{
    private const int PmtPid = 0x1000;
    private const int VideoPid = 0x100;
    private const int AudioPid = 0x101;
    private const long TimestampOffset = 90_000; // 1 s, so that DTS never goes below zero
    private const int MaxAdtsPayload = 0x1FFF - 7;
    private static readonly int[] AacRates = [96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350];
    private readonly Dictionary<int, int> _counters = [];
    private readonly ArrayBufferWriter<byte> _pes = new(64 * 1024);
    private byte[][] _parameterSets = [];
    private int _nalLengthSize = 4;
    private int _aacProfile = -1;
    private int _aacRateIndex;
    private int _aacChannels;
    private bool _tablesWritten;

    /// <summary>Whether the program has video (known once a video sequence header was seen). Set before the first frame.</summary>
    public bool HasVideo { get; set; } = true;

    public bool HasAudio { get; set; } = true;

    public void Write(MediaFrame frame, IBufferWriter<byte> output)
    {
        var body = frame.Payload.Span;
        switch (frame.Kind)
        {
            case MediaKind.Video when FlvMedia.VideoCodecId(body) == FlvMedia.AvcCodecId && body.Length > 5:
                if (body[1] == 0)
                {
                    try
                    {
                        var record = AvcDecoderConfigurationRecord.Parse(body[5..]);
                        _parameterSets = [.. record.SequenceParameterSets, .. record.PictureParameterSets];
                        _nalLengthSize = record.NalLengthSize;
                    }
                    catch (FormatException)
                    {
                        // Unreadable (an encoder's bug): the last readable one stays in force; before any, video waits.
                    }

                    return;
                }

                if (body[1] == 1 && _parameterSets.Length > 0)
                {
                    var keyframe = FlvMedia.IsVideoKeyframe(body);
                    if (keyframe || !_tablesWritten)
                    {
                        WriteTables(output);
                    }

                    var cts = (int)(BigEndian.ReadUInt24(body[2..]) << 8) >> 8; // signed 24-bit
                    WriteVideo(body[5..], frame.Timestamp, cts, keyframe, output);
                }

                return;
            case MediaKind.Audio when FlvMedia.SoundFormat(body) == FlvMedia.AacSoundFormat && body.Length > 2:
                if (body[1] == 0)
                {
                    AudioSpecificConfig config;
                    try
                    {
                        config = AudioSpecificConfig.Parse(body[2..]);
                    }
                    catch (FormatException)
                    {
                        return; // unreadable: the last readable one stays in force; before any, audio waits
                    }

                    // ADTS describes the AAC core: HE-AAC's SBR and PS are found by the decoder in the frames.
                    _aacProfile = Math.Clamp(config.CoreObjectType - 1, 0, 3);
                    _aacRateIndex = Math.Max(0, Array.IndexOf(AacRates, config.CoreSampleRate));
                    _aacChannels = config.ChannelConfiguration <= 7 ? config.ChannelConfiguration : 0;
                    return;
                }

                // ADTS counts a frame's length in 13 bits: a larger "AAC frame" (a real one is under 2 KB) is damage, left out.
                if (_aacProfile >= 0 && (_tablesWritten || !HasVideo) && body.Length - 2 <= MaxAdtsPayload)
                {
                    if (!_tablesWritten)
                    {
                        WriteTables(output);
                    }

                    WriteAudio(body[2..], frame.Timestamp, output);
                }

                return;
        }
    }

    private void WriteVideo(ReadOnlySpan<byte> avcc, uint timestamp, int cts, bool keyframe, IBufferWriter<byte> output)
    {
        _pes.ResetWrittenCount();
        var dts = TimestampOffset + timestamp * 90L;
        var pts = dts + cts * 90L;
        WritePesHeader(0xE0, pts, dts, 0);
        Append([0, 0, 0, 1, 0x09, 0xF0]); // access unit delimiter
        if (keyframe)
        {
            foreach (var set in _parameterSets)
            {
                Append([0, 0, 0, 1]);
                Append(set);
            }
        }

        while (avcc.Length >= _nalLengthSize)
        {
            var length = 0;
            for (var i = 0; i < _nalLengthSize; i++)
            {
                length = length << 8 | avcc[i];
            }

            if (length <= 0 || length > avcc.Length - _nalLengthSize)
            {
                break;
            }

            var nal = avcc.Slice(_nalLengthSize, length);
            if ((nal[0] & 0x1F) is not (7 or 8 or 9))
            {
                Append([0, 0, 0, 1]);
                Append(nal);
            }

            avcc = avcc[(_nalLengthSize + length)..];
        }

        Packetize(VideoPid, _pes.WrittenSpan, dts * 300, keyframe, output);
    }

    private void WriteAudio(ReadOnlySpan<byte> raw, uint timestamp, IBufferWriter<byte> output)
    {
        _pes.ResetWrittenCount();
        var pts = TimestampOffset + timestamp * 90L;
        var frameLength = 7 + raw.Length;
        WritePesHeader(0xC0, pts, -1, 3 + 5 + frameLength);
        Span<byte> adts = stackalloc byte[7];
        adts[0] = 0xFF;
        adts[1] = 0xF1; // MPEG-4, layer 0, no CRC
        adts[2] = (byte)(_aacProfile << 6 | _aacRateIndex << 2 | (_aacChannels >> 2 & 1));
        adts[3] = (byte)((_aacChannels & 3) << 6 | frameLength >> 11);
        adts[4] = (byte)(frameLength >> 3);
        adts[5] = (byte)((frameLength & 7) << 5 | 0x1F);
        adts[6] = 0xFC;
        Append(adts);
        Append(raw);
        Packetize(AudioPid, _pes.WrittenSpan, HasVideo ? -1 : pts * 300, false, output);
    }

    private void WritePesHeader(byte streamId, long pts, long dts, int pesLength)
    {
        var withDts = dts >= 0 && dts != pts;
        Span<byte> header = stackalloc byte[19];
        header[0] = 0;
        header[1] = 0;
        header[2] = 1;
        header[3] = streamId;
        var length = pesLength == 0 ? 0 : pesLength + (withDts ? 5 : 0);
        BinaryPrimitives.WriteUInt16BigEndian(header[4..], (ushort)(length > 0xFFFF ? 0 : length));
        header[6] = 0x80;
        header[7] = (byte)(withDts ? 0xC0 : 0x80);
        header[8] = (byte)(withDts ? 10 : 5);
        WriteTimestamp(header[9..], withDts ? 3 : 2, pts);
        if (withDts)
        {
            WriteTimestamp(header[14..], 1, dts);
        }

        Append(header[..(withDts ? 19 : 14)]);
    }

    private static void WriteTimestamp(Span<byte> b, int marker, long value)
    {
        value &= (1L << 33) - 1;
        b[0] = (byte)(marker << 4 | (int)(value >> 29 & 0x0E) | 1);
        b[1] = (byte)(value >> 22);
        b[2] = (byte)((value >> 14 & 0xFE) | 1);
        b[3] = (byte)(value >> 7);
        b[4] = (byte)((value << 1 & 0xFE) | 1);
    }

    private void Append(ReadOnlySpan<byte> data)
    {
        data.CopyTo(_pes.GetSpan(data.Length));
        _pes.Advance(data.Length);
    }

    private void WriteTables(IBufferWriter<byte> output)
    {
        Span<byte> section = stackalloc byte[64];
        // PAT: program 1 → PMT PID.
        var n = 0;
        section[n++] = 0x00;
        var lengthAt = n;
        n += 2;
        section[n++] = 0x00;
        section[n++] = 0x01; // transport stream id
        section[n++] = 0xC1; // version 0, current
        section[n++] = 0;
        section[n++] = 0;
        section[n++] = 0x00;
        section[n++] = 0x01; // program 1
        section[n++] = (byte)(0xE0 | PmtPid >> 8);
        section[n++] = PmtPid & 0xFF;
        n = FinishSection(section, lengthAt, n);
        WriteSectionPacket(0, section[..n], output);

        // PMT: PCR on video (or audio), H.264 and AAC ADTS streams.
        n = 0;
        section[n++] = 0x02;
        lengthAt = n;
        n += 2;
        section[n++] = 0x00;
        section[n++] = 0x01; // program number
        section[n++] = 0xC1;
        section[n++] = 0;
        section[n++] = 0;
        var pcrPid = HasVideo ? VideoPid : AudioPid;
        section[n++] = (byte)(0xE0 | pcrPid >> 8);
        section[n++] = (byte)pcrPid;
        section[n++] = 0xF0;
        section[n++] = 0x00; // no program info
        if (HasVideo)
        {
            n = WriteStream(section, n, 0x1B, VideoPid);
        }

        if (HasAudio)
        {
            n = WriteStream(section, n, 0x0F, AudioPid);
        }

        n = FinishSection(section, lengthAt, n);
        WriteSectionPacket(PmtPid, section[..n], output);
        _tablesWritten = true;
    }

    private static int WriteStream(Span<byte> section, int n, byte type, int pid)
    {
        section[n++] = type;
        section[n++] = (byte)(0xE0 | pid >> 8);
        section[n++] = (byte)pid;
        section[n++] = 0xF0;
        section[n++] = 0x00;
        return n;
    }

    private static int FinishSection(Span<byte> section, int lengthAt, int n)
    {
        var length = n - 3 + 4; // after the length field, with the CRC
        section[lengthAt] = (byte)(0xB0 | length >> 8);
        section[lengthAt + 1] = (byte)length;
        BinaryPrimitives.WriteUInt32BigEndian(section[n..], Crc32Mpeg(section[..n]));
        return n + 4;
    }

    private void WriteSectionPacket(int pid, ReadOnlySpan<byte> section, IBufferWriter<byte> output)
    {
        var packet = output.GetSpan(TsDemuxer.PacketSize)[..TsDemuxer.PacketSize];
        packet.Fill(0xFF);
        packet[0] = 0x47;
        packet[1] = (byte)(0x40 | pid >> 8);
        packet[2] = (byte)pid;
        packet[3] = (byte)(0x10 | NextCounter(pid));
        packet[4] = 0; // pointer field
        section.CopyTo(packet[5..]);
        output.Advance(TsDemuxer.PacketSize);
    }

    private int NextCounter(int pid)
    {
        var counter = _counters.TryGetValue(pid, out var c) ? (c + 1) & 0x0F : 0;
        _counters[pid] = counter;
        return counter;
    }

    /// <summary>Splits a PES into TS packets; the first carries PCR (when given) and the random-access flag.</summary>
    private void Packetize(int pid, ReadOnlySpan<byte> pes, long pcr, bool randomAccess, IBufferWriter<byte> output)
    {
        var first = true;
        while (pes.Length > 0)
        {
            var packet = output.GetSpan(TsDemuxer.PacketSize)[..TsDemuxer.PacketSize];
            packet[0] = 0x47;
            packet[1] = (byte)((first ? 0x40 : 0) | pid >> 8);
            packet[2] = (byte)pid;
            var adaptation = 0;
            var withPcr = first && pcr >= 0;
            if (withPcr || (first && randomAccess))
            {
                adaptation = withPcr ? 8 : 2; // length byte + flags (+ 6 PCR bytes)
            }

            var room = TsDemuxer.PacketSize - 4 - adaptation;
            var stuffing = pes.Length < room ? room - pes.Length : 0;
            if (stuffing > 0 && adaptation == 0)
            {
                // One stuffing byte needs only the length byte; more need the flags byte too.
                adaptation = stuffing == 1 ? 1 : 2;
                room = TsDemuxer.PacketSize - 4 - adaptation;
                stuffing = pes.Length < room ? room - pes.Length : 0;
            }

            packet[3] = (byte)((adaptation > 0 ? 0x30 : 0x10) | NextCounter(pid));
            var pos = 4;
            if (adaptation > 0)
            {
                var fieldLength = adaptation - 1 + stuffing;
                packet[pos++] = (byte)fieldLength;
                if (fieldLength > 0)
                {
                    packet[pos++] = (byte)((first && randomAccess ? 0x40 : 0) | (withPcr ? 0x10 : 0));
                    if (withPcr)
                    {
                        var basePcr = pcr / 300 & ((1L << 33) - 1);
                        var extension = pcr % 300;
                        packet[pos++] = (byte)(basePcr >> 25);
                        packet[pos++] = (byte)(basePcr >> 17);
                        packet[pos++] = (byte)(basePcr >> 9);
                        packet[pos++] = (byte)(basePcr >> 1);
                        packet[pos++] = (byte)((int)(basePcr & 1) << 7 | 0x7E | (int)(extension >> 8));
                        packet[pos++] = (byte)extension;
                    }

                    packet.Slice(pos, stuffing).Fill(0xFF);
                    pos += stuffing;
                }
            }

            var take = Math.Min(TsDemuxer.PacketSize - pos, pes.Length);
            pes[..take].CopyTo(packet[pos..]);
            pes = pes[take..];
            output.Advance(TsDemuxer.PacketSize);
            first = false;
        }
    }

    private static uint Crc32Mpeg(ReadOnlySpan<byte> data)
    {
        var crc = 0xFFFFFFFFu;
        foreach (var b in data)
        {
            crc ^= (uint)b << 24;
            for (var i = 0; i < 8; i++)
            {
                crc = (crc & 0x80000000) != 0 ? crc << 1 ^ 0x04C11DB7 : crc << 1;
            }
        }

        return crc;
    }
}
