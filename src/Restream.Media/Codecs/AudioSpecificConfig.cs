namespace Restream.Media.Codecs;

/// <summary>The MPEG-4 AudioSpecificConfig (ISO/IEC 14496-3 1.6.2.1) of an AAC sequence header.</summary>
public sealed record AudioSpecificConfig(int ObjectType, int SampleRate, int Channels)
{
    private static readonly int[] SampleRates =
        [96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350];

    public string ProfileName => ObjectType switch
    {
        1 => "AAC Main",
        2 => "AAC LC",
        3 => "AAC SSR",
        4 => "AAC LTP",
        5 => "HE-AAC",
        29 => "HE-AACv2",
        _ => $"AAC object type {ObjectType}",
    };

    public static AudioSpecificConfig Parse(ReadOnlySpan<byte> data)
    {
        try
        {
            var r = new BitReader(data);
            var objectType = (int)r.ReadBits(5);
            if (objectType == 31)
            {
                objectType = 32 + (int)r.ReadBits(6);
            }

            var index = (int)r.ReadBits(4);
            int rate;
            if (index == 15)
            {
                rate = (int)r.ReadBits(24);
            }
            else if (index < SampleRates.Length)
            {
                rate = SampleRates[index];
            }
            else
            {
                throw new FormatException($"reserved AAC sampling frequency index {index}");
            }

            var channels = (int)r.ReadBits(4);
            return new AudioSpecificConfig(objectType, rate, channels == 7 ? 8 : channels);
        }
        catch (FormatException e) when (e.Message == "bitstream ended early")
        {
            throw new FormatException("AudioSpecificConfig is truncated", e);
        }
    }
}
