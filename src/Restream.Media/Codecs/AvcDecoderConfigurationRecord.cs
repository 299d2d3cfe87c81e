using System.Buffers.Binary;

namespace Restream.Media.Codecs;

/// <summary>The AVCDecoderConfigurationRecord (ISO/IEC 14496-15 5.2.4.1) carried by an AVC sequence header.</summary>
public sealed record AvcDecoderConfigurationRecord(
    byte Profile, byte Compatibility, byte Level, int NalLengthSize,
    IReadOnlyList<byte[]> SequenceParameterSets, IReadOnlyList<byte[]> PictureParameterSets)
{
    public static AvcDecoderConfigurationRecord Parse(ReadOnlySpan<byte> data)
    {
        if (data.Length < 7 || data[0] != 1)
        {
            throw new FormatException("not an AVCDecoderConfigurationRecord (version 1)");
        }

        var pos = 5;
        var sps = ReadSets(data, ref pos, data[pos++] & 0x1F, "SPS");
        if (pos >= data.Length)
        {
            throw new FormatException("AVCDecoderConfigurationRecord ends before its PPS count");
        }

        var pps = ReadSets(data, ref pos, data[pos++], "PPS");
        return new AvcDecoderConfigurationRecord(data[1], data[2], data[3], (data[4] & 3) + 1, sps, pps);
    }

    private static List<byte[]> ReadSets(ReadOnlySpan<byte> data, ref int pos, int count, string what)
    {
        var sets = new List<byte[]>(count);
        for (var i = 0; i < count; i++)
        {
            if (pos + 2 > data.Length)
            {
                throw new FormatException($"{what} length is truncated");
            }

            var length = BinaryPrimitives.ReadUInt16BigEndian(data[pos..]);
            pos += 2;
            if (pos + length > data.Length)
            {
                throw new FormatException($"{what} of {length} bytes runs past the record");
            }

            sets.Add(data.Slice(pos, length).ToArray());
            pos += length;
        }

        return sets;
    }
}

/// <summary>What a streamer and an operator care about in an H.264 SPS (H.264 7.3.2.1.1).</summary>
public sealed record SequenceParameterSet(int ProfileIdc, int LevelIdc, int Width, int Height, double? FrameRate)
{
    private const long MaxFrameMbs = 139_264;
    private const long MaxSideMbs = 1_055;

    /// <summary>The highest frame rate taken from an SPS's timing; above it (or below 1) the rate is unknown.</summary>
    public const double MaxFrameRate = 480;

    public string ProfileName => ProfileIdc switch
    {
        66 => "Baseline",
        77 => "Main",
        88 => "Extended",
        100 => "High",
        110 => "High 10",
        122 => "High 4:2:2",
        244 => "High 4:4:4",
        _ => $"profile {ProfileIdc}",
    };

    /// <summary>Parses an SPS NAL unit (with its one-byte NAL header).</summary>
    public static SequenceParameterSet Parse(ReadOnlySpan<byte> nal)
    {
        if (nal.Length < 4 || (nal[0] & 0x1F) != 7)
        {
            throw new FormatException("not an SPS NAL unit");
        }

        var rbsp = RemoveEmulationPrevention(nal[1..]);
        var r = new BitReader(rbsp);
        var profile = (int)r.ReadBits(8);
        r.ReadBits(8); // constraint flags
        var level = (int)r.ReadBits(8);
        r.ReadUe(); // seq_parameter_set_id
        uint chromaFormat = 1;
        var separateColourPlane = false;
        if (profile is 100 or 110 or 122 or 244 or 44 or 83 or 86 or 118 or 128 or 138 or 139 or 134 or 135)
        {
            chromaFormat = r.ReadUe();
            if (chromaFormat == 3)
            {
                separateColourPlane = r.ReadFlag();
            }

            r.ReadUe(); // bit_depth_luma_minus8
            r.ReadUe(); // bit_depth_chroma_minus8
            r.ReadBit(); // qpprime_y_zero_transform_bypass_flag
            if (r.ReadFlag())
            {
                var lists = chromaFormat != 3 ? 8 : 12;
                for (var i = 0; i < lists; i++)
                {
                    if (r.ReadFlag())
                    {
                        SkipScalingList(ref r, i < 6 ? 16 : 64);
                    }
                }
            }
        }

        r.ReadUe(); // log2_max_frame_num_minus4
        var pocType = r.ReadUe();
        if (pocType == 0)
        {
            r.ReadUe();
        }
        else if (pocType == 1)
        {
            r.ReadBit();
            r.ReadSe();
            r.ReadSe();
            var cycle = r.ReadUe();
            for (var i = 0; i < cycle; i++)
            {
                r.ReadSe();
            }
        }

        r.ReadUe(); // max_num_ref_frames
        r.ReadBit(); // gaps_in_frame_num_value_allowed_flag
        var widthMbs = r.ReadUe() + 1L;
        var heightMapUnits = r.ReadUe() + 1L;
        var frameMbsOnly = r.ReadBit();
        if (frameMbsOnly == 0)
        {
            r.ReadBit(); // mb_adaptive_frame_field_flag
        }

        r.ReadBit(); // direct_8x8_inference_flag
        uint cropLeft = 0, cropRight = 0, cropTop = 0, cropBottom = 0;
        if (r.ReadFlag())
        {
            cropLeft = r.ReadUe();
            cropRight = r.ReadUe();
            cropTop = r.ReadUe();
            cropBottom = r.ReadUe();
        }

        var arrayType = separateColourPlane ? 0 : chromaFormat;
        var subWidth = chromaFormat is 1 or 2 ? 2u : 1u;
        var subHeight = chromaFormat == 1 ? 2u : 1u;
        var cropUnitX = arrayType == 0 ? 1u : subWidth;
        var cropUnitY = (arrayType == 0 ? 1u : subHeight) * (2 - frameMbsOnly);
        // H.264's largest frame (level 6.2, table A-1): 139 264 macroblocks, at most sqrt(8 x 139 264) = 1 055 a side.
        var heightMbs = (2 - frameMbsOnly) * heightMapUnits;
        if (widthMbs > MaxSideMbs || heightMbs > MaxSideMbs || widthMbs * heightMbs > MaxFrameMbs)
        {
            throw new FormatException($"SPS gives a frame of {widthMbs}x{heightMbs} macroblocks, more than H.264 allows");
        }

        var width = widthMbs * 16 - cropUnitX * ((long)cropLeft + cropRight);
        var height = heightMbs * 16 - cropUnitY * ((long)cropTop + cropBottom);
        if (width < 1 || height < 1)
        {
            throw new FormatException($"SPS crops its {widthMbs * 16}x{heightMbs * 16} frame to nothing");
        }

        double? fps = null;
        try
        {
            fps = ReadVuiFrameRate(ref r);
        }
        catch (FormatException)
        {
            // A truncated VUI still gives a usable size; the frame rate then comes from metadata.
        }

        return new SequenceParameterSet(profile, level, (int)width, (int)height, fps);
    }

    private static double? ReadVuiFrameRate(ref BitReader r)
    {
        if (!r.ReadFlag())
        {
            return null;
        }

        if (r.ReadFlag() && r.ReadBits(8) == 255)
        {
            r.ReadBits(32); // sar_width, sar_height
        }

        if (r.ReadFlag())
        {
            r.ReadBit(); // overscan_appropriate_flag
        }

        if (r.ReadFlag())
        {
            r.ReadBits(4); // video_format, video_full_range_flag
            if (r.ReadFlag())
            {
                r.ReadBits(24);
            }
        }

        if (r.ReadFlag())
        {
            r.ReadUe();
            r.ReadUe();
        }

        if (!r.ReadFlag())
        {
            return null;
        }

        var unitsInTick = r.ReadBits(32);
        var timeScale = r.ReadBits(32);
        // Timing that says nothing useful (a millisecond clock of a variable-rate encoder, damage) leaves the rate to metadata.
        var fps = unitsInTick == 0 ? 0 : timeScale / (2.0 * unitsInTick);
        return fps is >= 1 and <= MaxFrameRate ? fps : null;
    }

    private static void SkipScalingList(ref BitReader r, int size)
    {
        int last = 8, next = 8;
        for (var j = 0; j < size; j++)
        {
            if (next != 0)
            {
                next = (last + r.ReadSe() + 256) % 256;
            }

            last = next == 0 ? last : next;
        }
    }

    /// <summary>Drops the 0x03 of every 0x000003 sequence (H.264 7.4.1).</summary>
    internal static byte[] RemoveEmulationPrevention(ReadOnlySpan<byte> data)
    {
        var output = new byte[data.Length];
        var n = 0;
        var zeros = 0;
        foreach (var b in data)
        {
            if (zeros >= 2 && b == 3)
            {
                zeros = 0;
                continue;
            }

            zeros = b == 0 ? zeros + 1 : 0;
            output[n++] = b;
        }

        return output[..n];
    }
}
