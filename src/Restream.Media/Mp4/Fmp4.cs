using System.Buffers.Binary;

namespace Restream.Media.Mp4;

/// <summary>One movie fragment (a <c>moof</c> with its <c>mdat</c>) inside a CMAF/fMP4 segment: an LL-HLS part.</summary>
public readonly record struct Fmp4Fragment(long Offset, long Length, double Duration, bool Independent);

/// <summary>What the init segment says about the track: its timescale and default sample duration.</summary>
public readonly record struct Fmp4Track(uint Timescale, uint DefaultSampleDuration);

/// <summary>
/// Reads just enough ISO BMFF (ISO/IEC 14496-12) to cut a growing fMP4 segment into its fragments:
/// box sizes, <c>mdhd</c> timescale, <c>trex</c>/<c>tfhd</c> defaults and <c>trun</c> sample durations and
/// flags. A fragment is reported only once its <c>mdat</c> is complete, so a segment still being
/// written yields the parts that can already be served.
/// </summary>
public static class Fmp4
{
    private const uint NonSyncSample = 0x0001_0000;

    /// <summary>The first track's timescale and default sample duration from an init segment; null if absent.</summary>
    public static Fmp4Track? ReadTrack(ReadOnlySpan<byte> init)
    {
        var moov = Find(init, "moov"u8);
        if (moov.IsEmpty)
        {
            return null;
        }

        var mdhd = Find(Find(Find(moov, "trak"u8), "mdia"u8), "mdhd"u8);
        if (mdhd.Length < 24)
        {
            return null;
        }

        // version 0: creation (4), modification (4), timescale; version 1: 8-byte times.
        var timescale = BinaryPrimitives.ReadUInt32BigEndian(mdhd[0] == 1 ? mdhd[20..] : mdhd[12..]);
        var trex = Find(Find(moov, "mvex"u8), "trex"u8);
        var duration = trex.Length >= 16 ? BinaryPrimitives.ReadUInt32BigEndian(trex[12..]) : 0;
        return timescale == 0 ? null : new Fmp4Track(timescale, duration);
    }

    /// <summary>The complete fragments of a segment, in order.</summary>
    public static List<Fmp4Fragment> ScanFragments(ReadOnlySpan<byte> segment, Fmp4Track track)
    {
        var fragments = new List<Fmp4Fragment>();
        long offset = 0;
        long moofStart = -1;
        var duration = 0L;
        var independent = true;
        while (offset + 8 <= segment.Length)
        {
            var size = (long)BinaryPrimitives.ReadUInt32BigEndian(segment[(int)offset..]);
            var type = segment.Slice((int)offset + 4, 4);
            var header = 8;
            if (size == 1 && offset + 16 <= segment.Length)
            {
                size = (long)BinaryPrimitives.ReadUInt64BigEndian(segment[((int)offset + 8)..]);
                header = 16;
            }

            if (size < header || offset + size > segment.Length)
            {
                break; // still being written
            }

            var body = segment.Slice((int)offset + header, (int)size - header);
            if (type.SequenceEqual("moof"u8))
            {
                moofStart = offset;
                (duration, independent) = ReadMoof(body, track);
            }
            else if (type.SequenceEqual("mdat"u8) && moofStart >= 0)
            {
                fragments.Add(new Fmp4Fragment(moofStart, offset + size - moofStart, (double)duration / track.Timescale, independent));
                moofStart = -1;
            }

            offset += size;
        }

        return fragments;
    }

    private static (long Duration, bool Independent) ReadMoof(ReadOnlySpan<byte> moof, Fmp4Track track)
    {
        var traf = Find(moof, "traf"u8);
        var tfhd = Find(traf, "tfhd"u8);
        uint defaultDuration = track.DefaultSampleDuration;
        uint defaultFlags = 0;
        if (tfhd.Length >= 8)
        {
            var flags = BinaryPrimitives.ReadUInt32BigEndian(tfhd) & 0xFFFFFF;
            var at = 8; // version/flags, track_ID
            at += (flags & 0x01) != 0 ? 8 : 0; // base-data-offset
            at += (flags & 0x02) != 0 ? 4 : 0; // sample-description-index
            if ((flags & 0x08) != 0 && tfhd.Length >= at + 4)
            {
                defaultDuration = BinaryPrimitives.ReadUInt32BigEndian(tfhd[at..]);
                at += 4;
            }

            at += (flags & 0x10) != 0 ? 4 : 0; // default-sample-size
            if ((flags & 0x20) != 0 && tfhd.Length >= at + 4)
            {
                defaultFlags = BinaryPrimitives.ReadUInt32BigEndian(tfhd[at..]);
            }
        }

        var trun = Find(traf, "trun"u8);
        if (trun.Length < 8)
        {
            return (0, true);
        }

        var trunFlags = BinaryPrimitives.ReadUInt32BigEndian(trun) & 0xFFFFFF;
        var count = BinaryPrimitives.ReadUInt32BigEndian(trun[4..]);
        var pos = 8;
        pos += (trunFlags & 0x01) != 0 ? 4 : 0; // data-offset
        uint? firstFlags = null;
        if ((trunFlags & 0x04) != 0 && trun.Length >= pos + 4)
        {
            firstFlags = BinaryPrimitives.ReadUInt32BigEndian(trun[pos..]);
            pos += 4;
        }

        var perSample = ((trunFlags & 0x100) != 0 ? 4 : 0) + ((trunFlags & 0x200) != 0 ? 4 : 0) + ((trunFlags & 0x400) != 0 ? 4 : 0) + ((trunFlags & 0x800) != 0 ? 4 : 0);
        long total = 0;
        uint? sampleZeroFlags = null;
        for (var i = 0; i < count && trun.Length >= pos + perSample; i++, pos += perSample)
        {
            var field = pos;
            var sampleDuration = defaultDuration;
            if ((trunFlags & 0x100) != 0)
            {
                sampleDuration = BinaryPrimitives.ReadUInt32BigEndian(trun[field..]);
                field += 4;
            }

            field += (trunFlags & 0x200) != 0 ? 4 : 0;
            if (i == 0 && (trunFlags & 0x400) != 0)
            {
                sampleZeroFlags = BinaryPrimitives.ReadUInt32BigEndian(trun[field..]);
            }

            total += sampleDuration;
        }

        if (perSample == 0)
        {
            total = (long)defaultDuration * count;
        }

        var first = firstFlags ?? sampleZeroFlags ?? defaultFlags;
        return (total, (first & NonSyncSample) == 0);
    }

    /// <summary>The body of the first child box of <paramref name="type"/>, or empty.</summary>
    private static ReadOnlySpan<byte> Find(ReadOnlySpan<byte> container, ReadOnlySpan<byte> type)
    {
        var offset = 0;
        while (offset + 8 <= container.Length)
        {
            var size = BinaryPrimitives.ReadUInt32BigEndian(container[offset..]);
            if (size < 8 || offset + size > container.Length)
            {
                return [];
            }

            if (container.Slice(offset + 4, 4).SequenceEqual(type))
            {
                return container.Slice(offset + 8, (int)size - 8);
            }

            offset += (int)size;
        }

        return [];
    }
}
