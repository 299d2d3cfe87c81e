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
    [InlineData(new byte[] { 0x2B, 0x92, 0x08, 0x00 }, 5, 22050, 2)] // HE-AAC signalled explicitly
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
}
