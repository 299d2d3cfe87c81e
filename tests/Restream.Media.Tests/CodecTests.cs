using Restream.Media.Codecs;

namespace Restream.Media.Tests;

public sealed class CodecTests
{
    [Theory]
    // SPSs written by x264 (Debian ffmpeg): ffmpeg -f lavfi -i testsrc2=size=WxH:rate=R -frames:v 1
    //   -c:v libx264 [-profile:v baseline] -f h264 out.h264, then the NAL after 00 00 00 01 67.
    [InlineData("6764001FACD9405005BB0110000003001000000303C0F1831960", 1280, 720, 100, 30.0)]
    [InlineData("67640028ACD940780227E5C044000003000400000300F03C60C658", 1920, 1080, 100, 30.0)] // cropped from 1088
    [InlineData("6764001EACD940A02FF970110000030001000003003C0F162D96", 640, 360, 100, 30.0)]
    [InlineData("6742C01ED900A02FF97011000003000100000300320F162E48", 640, 360, 66, 25.0)]
    public void Sps_gives_size_profile_and_frame_rate(string hex, int width, int height, int profile, double fps)
    {
        var sps = SequenceParameterSet.Parse(Convert.FromHexString(hex));
        Assert.Equal((width, height, profile), (sps.Width, sps.Height, sps.ProfileIdc));
        Assert.Equal(fps, sps.FrameRate);
        Assert.Equal(profile == 100 ? "High" : "Baseline", sps.ProfileName);
    }

    [Fact]
    public void Emulation_prevention_bytes_are_removed()
    {
        Assert.Equal(new byte[] { 0, 0, 1, 0, 0, 0 }, SequenceParameterSet.RemoveEmulationPrevention([0, 0, 3, 1, 0, 0, 3, 0]));
    }

    [Theory]
    [InlineData(new byte[] { 0x12, 0x10 }, 2, 44100, 2)]
    [InlineData(new byte[] { 0x11, 0x90 }, 2, 48000, 2)]
    [InlineData(new byte[] { 0x13, 0x08 }, 2, 24000, 1)]
    [InlineData(new byte[] { 0x2B, 0x92, 0x08, 0x00 }, 5, 44100, 2)] // HE-AAC signalled explicitly: 22.05 kHz core, 44.1 kHz out
    [InlineData(new byte[] { 0x11, 0xB8 }, 2, 48000, 8)] // 7.1 (channel configuration 6 is 5.1, 7 is 7.1)
    public void AudioSpecificConfig_gives_object_type_rate_and_channels(byte[] bytes, int objectType, int rate, int channels)
    {
        var asc = AudioSpecificConfig.Parse(bytes);
        Assert.Equal((objectType, rate, channels), (asc.ObjectType, asc.SampleRate, asc.Channels));
    }

    [Fact]
    public void Truncated_inputs_throw_FormatException()
    {
        Assert.Throws<FormatException>(() => AudioSpecificConfig.Parse([0x12]));
        Assert.Throws<FormatException>(() => AvcDecoderConfigurationRecord.Parse([1, 0x64, 0, 0x28, 0xFF, 0xE1, 0x00, 0x20, 0x67]));
        Assert.Throws<FormatException>(() => SequenceParameterSet.Parse([0x68, 1, 2, 3]));
    }

    [Theory]
    [InlineData(new byte[] { 0x12, 0x40 })] // channel configuration 8: reserved
    [InlineData(new byte[] { 0x12, 0x78 })] // channel configuration 15: reserved
    [InlineData(new byte[] { 0x17, 0x80, 0x00, 0x00, 0x10 })] // an explicit rate (index 15) of 0 Hz
    [InlineData(new byte[] { 0x17, 0x80, 0xBB, 0x80, 0x90 })] // of 96 001 Hz
    [InlineData(new byte[] { 0x17, 0xFF, 0xFF, 0xFF, 0x90 })] // of 16.7 MHz
    public void AudioSpecificConfig_with_impossible_rates_or_reserved_channels_is_refused(byte[] bytes)
    {
        Assert.Throws<FormatException>(() => AudioSpecificConfig.Parse(bytes));
    }

    [Theory]
    [InlineData(new byte[] { 0x17, 0x80, 0x00, 0x00, 0x90 }, 1)]
    [InlineData(new byte[] { 0x17, 0x80, 0xBB, 0x80, 0x10 }, 96000)]
    public void AudioSpecificConfig_explicit_rates_from_1_Hz_to_96_kHz_are_read(byte[] bytes, int rate)
    {
        var asc = AudioSpecificConfig.Parse(bytes);
        Assert.Equal((2, rate, 2), (asc.ObjectType, asc.SampleRate, asc.Channels));
    }

    [Theory]
    [InlineData(80, 45, 0, 1280, 720)]
    [InlineData(120, 68, 4, 1920, 1080)] // 1088 rows cropped by 2 x 4
    [InlineData(1055, 132, 0, 16880, 2112)] // 139 260 macroblocks: as large as level 6.2 goes
    public void Sps_sizes_up_to_the_largest_H264_frame_are_read(int widthMbs, int heightMbs, int cropBottom, int width, int height)
    {
        var sps = SequenceParameterSet.Parse(BaselineSps(widthMbs, heightMbs, cropBottom));
        Assert.Equal((width, height, 66), (sps.Width, sps.Height, sps.ProfileIdc));
    }

    [Theory]
    [InlineData(4096, 45, 0, "4096x45 macroblocks")] // wider than any level allows
    [InlineData(1055, 133, 0, "1055x133 macroblocks")] // 140 315 macroblocks
    [InlineData(80, 45, 400, "to nothing")] // cropped past its own height
    public void Sps_with_a_frame_H264_cannot_have_is_refused(int widthMbs, int heightMbs, int cropBottom, string message)
    {
        var error = Assert.Throws<FormatException>(() => SequenceParameterSet.Parse(BaselineSps(widthMbs, heightMbs, cropBottom)));
        Assert.Contains(message, error.Message);
    }

    /// <summary>A Baseline SPS (H.264 7.3.2.1.1) of the given size in macroblocks, cropped at the bottom by 2 x <paramref name="cropBottom"/> rows.</summary>
    private static byte[] BaselineSps(int widthMbs, int heightMbs, int cropBottom)
    {
        var bits = new System.Text.StringBuilder("01100111"); // NAL header: SPS
        bits.Append("01000010").Append("00000000").Append("00011111"); // profile_idc 66, constraint flags, level_idc 31
        void Ue(long value)
        {
            var code = Convert.ToString(value + 1, 2);
            bits.Append(new string('0', code.Length - 1)).Append(code);
        }

        Ue(0); // seq_parameter_set_id
        Ue(0); // log2_max_frame_num_minus4
        Ue(2); // pic_order_cnt_type
        Ue(1); // max_num_ref_frames
        bits.Append('0'); // gaps_in_frame_num_value_allowed_flag
        Ue(widthMbs - 1);
        Ue(heightMbs - 1);
        bits.Append("11"); // frame_mbs_only_flag, direct_8x8_inference_flag
        bits.Append(cropBottom > 0 ? '1' : '0');
        if (cropBottom > 0)
        {
            Ue(0);
            Ue(0);
            Ue(0);
            Ue(cropBottom);
        }

        bits.Append("01"); // no VUI, then the stop bit
        while (bits.Length % 8 != 0)
        {
            bits.Append('0');
        }

        // Emulation prevention (H.264 7.4.1): 0x03 after two zero bytes that a byte of 0-3 follows.
        var rbsp = Enumerable.Range(0, bits.Length / 8).Select(i => Convert.ToByte(bits.ToString(i * 8, 8), 2));
        var nal = new List<byte>();
        var zeros = 0;
        foreach (var b in rbsp)
        {
            if (zeros >= 2 && b <= 3)
            {
                nal.Add(3);
                zeros = 0;
            }

            nal.Add(b);
            zeros = b == 0 ? zeros + 1 : 0;
        }

        return [.. nal];
    }
}
