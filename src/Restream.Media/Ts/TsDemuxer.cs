using System.Buffers.Binary;
using Restream.Media.Flv;

namespace Restream.Media.Ts;

/// <summary>
/// Turns an MPEG transport stream (ISO/IEC 13818-1) carrying H.264 and AAC into the same FLV-shaped
/// <see cref="MediaFrame"/>s that RTMP publishers send, so an SRT feed enters the stream hub like any
/// other: PAT and PMT find the streams, PES packets are reassembled across TS packets, H.264 Annex B
/// becomes AVCC with an AVC sequence header built from the in-band SPS/PPS, ADTS becomes raw AAC with
/// an AudioSpecificConfig, and 90 kHz PTS/DTS become millisecond timestamps (33-bit wrap unrolled).
/// Input may arrive in any pieces; lost packets (continuity errors) drop the damaged PES only.
/// </summary>
public sealed class TsDemuxer
{
    public const int PacketSize = 188;
    private const byte SyncByte = 0x47;
    private const int StreamTypeH264 = 0x1B;
    private const int StreamTypeAacAdts = 0x0F;
    private static readonly int[] AacRates = [96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350];

    private readonly Action<MediaFrame> _output;
    private readonly byte[] _carry = new byte[PacketSize];
    private readonly Dictionary<int, ElementaryStream> _streams = [];
    private readonly Dictionary<int, int> _lastCounter = [];
    private int _carried;
    private int _pmtPid = -1;
    private long _lastTimestamp = -1;
    private long _base = -1;
    private byte[]? _sps;
    private byte[]? _pps;
    private bool _videoHeaderSent;
    private int _audioConfig = -1;

    public TsDemuxer(Action<MediaFrame> output)
    {
        _output = output;
    }

    /// <summary>Packets whose continuity counter skipped: data was lost before us.</summary>
    public long ContinuityErrors { get; private set; }

    /// <summary>Bytes skipped to find the next sync byte.</summary>
    public long SkippedBytes { get; private set; }

    public bool HasVideo => _streams.Values.Any(s => s.Type == StreamTypeH264);

    public void Feed(ReadOnlySpan<byte> data)
    {
        if (_carried > 0)
        {
            var take = Math.Min(PacketSize - _carried, data.Length);
            data[..take].CopyTo(_carry.AsSpan(_carried));
            _carried += take;
            data = data[take..];
            if (_carried < PacketSize)
            {
                return;
            }

            _carried = 0;
            if (_carry[0] == SyncByte)
            {
                Packet(_carry);
            }
        }

        while (data.Length > 0)
        {
            if (data[0] != SyncByte)
            {
                var next = data.IndexOf(SyncByte);
                SkippedBytes += next < 0 ? data.Length : next;
                if (next < 0)
                {
                    return;
                }

                data = data[next..];
            }

            if (data.Length < PacketSize)
            {
                data.CopyTo(_carry);
                _carried = data.Length;
                return;
            }

            Packet(data[..PacketSize]);
            data = data[PacketSize..];
        }
    }

    /// <summary>Emits what is still buffered (the last PES of each stream), e.g. when the feed ends.</summary>
    public void Flush()
    {
        foreach (var stream in _streams.Values)
        {
            CompletePes(stream);
        }
    }

    private void Packet(ReadOnlySpan<byte> p)
    {
        var unitStart = (p[1] & 0x40) != 0;
        var pid = (p[1] & 0x1F) << 8 | p[2];
        var adaptation = (p[3] >> 4) & 3;
        var counter = p[3] & 0x0F;
        var offset = 4;
        var discontinuity = false;
        if ((adaptation & 2) != 0)
        {
            var length = p[4];
            discontinuity = length > 0 && (p[5] & 0x80) != 0;
            offset += 1 + length;
        }

        if ((adaptation & 1) == 0 || offset >= PacketSize || pid == 0x1FFF)
        {
            return;
        }

        if (_lastCounter.TryGetValue(pid, out var last) && !discontinuity)
        {
            if (counter == last)
            {
                return; // a duplicate packet (allowed once by the spec)
            }

            if (counter != ((last + 1) & 0x0F))
            {
                ContinuityErrors++;
                if (_streams.TryGetValue(pid, out var damaged))
                {
                    damaged.Reset(); // the PES in progress has a hole: drop it
                }
            }
        }

        _lastCounter[pid] = counter;
        var payload = p[offset..];
        if (pid == 0)
        {
            if (unitStart)
            {
                ParsePat(payload);
            }
        }
        else if (pid == _pmtPid)
        {
            if (unitStart)
            {
                ParsePmt(payload);
            }
        }
        else if (_streams.TryGetValue(pid, out var stream))
        {
            if (unitStart)
            {
                CompletePes(stream);
                stream.Started = true;
            }

            if (stream.Started)
            {
                if (unitStart && _base < 0)
                {
                    // Time zero is the first PES to *start*, in stream order: a short audio PES that
                    // completes before the video PES in front of it must not move the origin.
                    SetBase(payload);
                }

                stream.Append(payload);
                if (stream.ExpectedLength > 0 && stream.Length >= stream.ExpectedLength)
                {
                    CompletePes(stream);
                }
            }
        }
    }

    private static ReadOnlySpan<byte> Section(ReadOnlySpan<byte> payload, int tableId)
    {
        var pointer = payload[0];
        if (1 + pointer + 3 > payload.Length)
        {
            return default;
        }

        var table = payload[(1 + pointer)..];
        if (table[0] != tableId)
        {
            return default;
        }

        var length = (table[1] & 0x0F) << 8 | table[2];
        return 3 + length > table.Length || length < 9 ? default : table[..(3 + length)];
    }

    private void ParsePat(ReadOnlySpan<byte> payload)
    {
        var section = Section(payload, 0x00);
        for (var i = 8; i + 4 <= section.Length - 4; i += 4)
        {
            var program = section[i] << 8 | section[i + 1];
            if (program != 0)
            {
                _pmtPid = (section[i + 2] & 0x1F) << 8 | section[i + 3];
                return; // the first program is the feed
            }
        }
    }

    private void ParsePmt(ReadOnlySpan<byte> payload)
    {
        var section = Section(payload, 0x02);
        if (section.Length < 12)
        {
            return;
        }

        var infoLength = (section[10] & 0x0F) << 8 | section[11];
        for (var i = 12 + infoLength; i + 5 <= section.Length - 4;)
        {
            var type = section[i];
            var pid = (section[i + 1] & 0x1F) << 8 | section[i + 2];
            var esInfo = (section[i + 3] & 0x0F) << 8 | section[i + 4];
            if (type is StreamTypeH264 or StreamTypeAacAdts && !_streams.ContainsKey(pid))
            {
                _streams[pid] = new ElementaryStream(type);
            }

            i += 5 + esInfo;
        }
    }

    private void CompletePes(ElementaryStream stream)
    {
        if (!stream.Started || stream.Length < 9)
        {
            stream.Reset();
            return;
        }

        var pes = stream.Data;
        stream.Reset();
        if (pes[0] != 0 || pes[1] != 0 || pes[2] != 1)
        {
            return;
        }

        var flags = pes[7];
        var headerLength = pes[8];
        if (9 + headerLength > pes.Length || (flags & 0x80) == 0)
        {
            return; // no PTS: nothing we can place in time
        }

        var pts = ReadTimestamp(pes[9..]);
        var dts = (flags & 0x40) != 0 && 9 + 10 <= pes.Length ? ReadTimestamp(pes[14..]) : pts;
        var body = pes[(9 + headerLength)..];
        var dtsMs = ToMilliseconds(Unwrap(dts));
        var ptsMs = ToMilliseconds(Unwrap(pts));
        if (stream.Type == StreamTypeH264)
        {
            EmitVideo(body, dtsMs, (int)(ptsMs - dtsMs));
        }
        else
        {
            EmitAudio(body, ptsMs);
        }
    }

    private void SetBase(ReadOnlySpan<byte> pes)
    {
        if (pes.Length >= 14 && pes[0] == 0 && pes[1] == 0 && pes[2] == 1 && (pes[7] & 0x80) != 0)
        {
            var dts = (pes[7] & 0x40) != 0 && pes.Length >= 19 ? ReadTimestamp(pes[14..]) : ReadTimestamp(pes[9..]);
            _base = Unwrap(dts);
        }
    }

    private static long ReadTimestamp(ReadOnlySpan<byte> b) =>
        (long)(b[0] >> 1 & 7) << 30 | (long)b[1] << 22 | (long)(b[2] >> 1) << 15 | (long)b[3] << 7 | (long)(b[4] >> 1);

    /// <summary>Places a 33-bit 90 kHz value next to the last one seen, unrolling the wrap at 2^33.</summary>
    internal long Unwrap(long value)
    {
        if (_lastTimestamp < 0)
        {
            _lastTimestamp = value;
            return value;
        }

        const long wrap = 1L << 33;
        var candidate = (_lastTimestamp & ~(wrap - 1)) | value;
        if (candidate < _lastTimestamp - wrap / 2)
        {
            candidate += wrap;
        }
        else if (candidate > _lastTimestamp + wrap / 2)
        {
            candidate -= wrap;
        }

        _lastTimestamp = Math.Max(_lastTimestamp, candidate);
        return candidate;
    }

    private long ToMilliseconds(long ticks90k)
    {
        if (_base < 0)
        {
            _base = ticks90k;
        }

        return Math.Max(0, (ticks90k - _base) / 90);
    }

    private void EmitVideo(ReadOnlySpan<byte> annexB, long timestamp, int compositionOffset)
    {
        // First pass: parameter sets, keyframe, size of the AVCC body.
        var keyframe = false;
        var size = 5;
        foreach (var nal in new NalUnits(annexB))
        {
            switch (nal[0] & 0x1F)
            {
                case 7:
                    if (_sps is null || !nal.SequenceEqual(_sps))
                    {
                        _sps = nal.ToArray();
                        _videoHeaderSent = false;
                    }

                    break;
                case 8:
                    if (_pps is null || !nal.SequenceEqual(_pps))
                    {
                        _pps = nal.ToArray();
                        _videoHeaderSent = false;
                    }

                    break;
                case 9:
                    break;
                case var type:
                    keyframe |= type == 5;
                    size += 4 + nal.Length;
                    break;
            }
        }

        if (!_videoHeaderSent && _sps is not null && _pps is not null)
        {
            EmitVideoHeader((uint)timestamp);
        }

        if (!_videoHeaderSent || size == 5)
        {
            return; // nothing decodable before the parameter sets
        }

        var buffer = MediaBuffers.Pool.Rent(size);
        buffer[0] = (byte)((keyframe ? 0x10 : 0x20) | FlvMedia.AvcCodecId);
        buffer[1] = 1;
        BigEndian.WriteUInt24(buffer.AsSpan(2), (uint)compositionOffset & 0xFFFFFF);
        var pos = 5;
        foreach (var nal in new NalUnits(annexB))
        {
            if ((nal[0] & 0x1F) is 7 or 8 or 9)
            {
                continue;
            }

            BinaryPrimitives.WriteUInt32BigEndian(buffer.AsSpan(pos), (uint)nal.Length);
            nal.CopyTo(buffer.AsSpan(pos + 4));
            pos += 4 + nal.Length;
        }

        _output(MediaFrame.Create(MediaKind.Video, (uint)timestamp, buffer, pos));
    }

    private void EmitVideoHeader(uint timestamp)
    {
        var sps = _sps!;
        var pps = _pps!;
        var length = 5 + 6 + 2 + sps.Length + 1 + 2 + pps.Length;
        var buffer = MediaBuffers.Pool.Rent(length);
        var b = buffer.AsSpan(0, length);
        b[0] = 0x10 | FlvMedia.AvcCodecId;
        b[1] = 0; // AVC sequence header
        b[2] = b[3] = b[4] = 0;
        b[5] = 1; // configurationVersion
        b[6] = sps[1]; // profile
        b[7] = sps[2]; // compatibility
        b[8] = sps[3]; // level
        b[9] = 0xFF; // 4-byte NAL lengths
        b[10] = 0xE1; // one SPS
        BinaryPrimitives.WriteUInt16BigEndian(b[11..], (ushort)sps.Length);
        sps.CopyTo(b[13..]);
        var pos = 13 + sps.Length;
        b[pos] = 1; // one PPS
        BinaryPrimitives.WriteUInt16BigEndian(b[(pos + 1)..], (ushort)pps.Length);
        pps.CopyTo(b[(pos + 3)..]);
        _videoHeaderSent = true;
        _output(MediaFrame.Create(MediaKind.Video, timestamp, buffer, length));
    }

    private void EmitAudio(ReadOnlySpan<byte> adts, long timestamp)
    {
        var frame = 0;
        while (adts.Length >= 7)
        {
            if (adts[0] != 0xFF || (adts[1] & 0xF0) != 0xF0)
            {
                return; // lost sync inside the PES: the rest is unusable
            }

            var headerLength = (adts[1] & 1) == 1 ? 7 : 9;
            var objectType = (adts[2] >> 6) + 1;
            var rateIndex = (adts[2] >> 2) & 0x0F;
            var channels = (adts[2] & 1) << 2 | adts[3] >> 6;
            var frameLength = (adts[3] & 3) << 11 | adts[4] << 3 | adts[5] >> 5;
            if (frameLength < headerLength || frameLength > adts.Length || rateIndex >= AacRates.Length)
            {
                return;
            }

            var config = objectType << 11 | rateIndex << 7 | channels << 3;
            var at = (uint)(timestamp + frame * 1024L * 1000 / AacRates[rateIndex]);
            if (config != _audioConfig)
            {
                _audioConfig = config;
                var header = MediaBuffers.Pool.Rent(4);
                header[0] = 0xAF;
                header[1] = 0;
                BinaryPrimitives.WriteUInt16BigEndian(header.AsSpan(2), (ushort)config);
                _output(MediaFrame.Create(MediaKind.Audio, at, header, 4));
            }

            var raw = adts[headerLength..frameLength];
            var buffer = MediaBuffers.Pool.Rent(2 + raw.Length);
            buffer[0] = 0xAF;
            buffer[1] = 1;
            raw.CopyTo(buffer.AsSpan(2));
            _output(MediaFrame.Create(MediaKind.Audio, at, buffer, 2 + raw.Length));
            adts = adts[frameLength..];
            frame++;
        }
    }

    private sealed class ElementaryStream(int type)
    {
        private byte[] _data = new byte[64 * 1024];

        public int Type { get; } = type;
        public bool Started { get; set; }
        public int Length { get; private set; }
        public ReadOnlySpan<byte> Data => _data.AsSpan(0, Length);

        /// <summary>The whole PES size when its header gives one (video usually says 0: unbounded).</summary>
        public int ExpectedLength => Length >= 6 && (_data[4] << 8 | _data[5]) is > 0 and var n ? 6 + n : 0;

        public void Append(ReadOnlySpan<byte> payload)
        {
            if (Length + payload.Length > _data.Length)
            {
                if (_data.Length >= 16 * 1024 * 1024)
                {
                    Reset(); // a PES larger than any sane frame: drop it
                    return;
                }

                Array.Resize(ref _data, Math.Max(_data.Length * 2, Length + payload.Length));
            }

            payload.CopyTo(_data.AsSpan(Length));
            Length += payload.Length;
        }

        public void Reset()
        {
            Length = 0;
            Started = false;
        }
    }

    /// <summary>Enumerates the NAL units of an Annex B byte stream (start codes 00 00 01 / 00 00 00 01).</summary>
    private ref struct NalUnits(ReadOnlySpan<byte> data)
    {
        private ReadOnlySpan<byte> _rest = data;

        public ReadOnlySpan<byte> Current { get; private set; }

        public readonly NalUnits GetEnumerator() => this;

        public bool MoveNext()
        {
            while (true)
            {
                var start = StartCode(_rest, out var codeLength);
                if (start < 0)
                {
                    return false;
                }

                var after = _rest[(start + codeLength)..];
                var end = StartCode(after, out _);
                var nal = end < 0 ? after : after[..end];
                _rest = end < 0 ? default : after[end..];
                while (nal.Length > 0 && nal[^1] == 0)
                {
                    nal = nal[..^1]; // trailing zero bytes belong to the next start code
                }

                if (nal.Length > 0)
                {
                    Current = nal;
                    return true;
                }
            }
        }

        private static int StartCode(ReadOnlySpan<byte> data, out int length)
        {
            for (var i = 0; i + 2 < data.Length; i++)
            {
                if (data[i] == 0 && data[i + 1] == 0 && data[i + 2] == 1)
                {
                    length = 3;
                    return i;
                }
            }

            length = 0;
            return -1;
        }
    }
}
