namespace Restream.Media.Codecs;

/// <summary>The MPEG-4 AudioSpecificConfig (ISO/IEC 14496-3 1.6.2.1) of an AAC sequence header.</summary>
public sealed record AudioSpecificConfig(int ObjectType, int SampleRate, int Channels)
{
    /// <summary>The object type of the AAC core: <see cref="ObjectType"/>, or for HE-AAC the one under SBR (what ADTS headers carry).</summary>
    public int CoreObjectType { get; init; } = ObjectType;

    /// <summary>The AAC core's sample rate: <see cref="SampleRate"/>, or for HE-AAC half of it (what ADTS headers carry).</summary>
    public int CoreSampleRate { get; init; } = SampleRate;

    /// <summary>The channel configuration as coded (1-6 as many channels, 7 for 7.1; 0 when a program config element says).</summary>
    public int ChannelConfiguration { get; init; } = Channels;

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

    /// <summary>
    /// Parses the config. For HE-AAC signalled explicitly (object type 5 or 29), the rate is the output
    /// rate after SBR, the extension's (what players and ffprobe show), not the core's half rate.
    /// A rate outside 1 Hz to 96 kHz or a reserved channel configuration is a <see cref="FormatException"/>.
    /// </summary>
    public static AudioSpecificConfig Parse(ReadOnlySpan<byte> data)
    {
        try
        {
            var r = new BitReader(data);
            var objectType = ReadObjectType(ref r);
            var rate = ReadRate(ref r);
            var configuration = (int)r.ReadBits(4);
            var channels = configuration switch
            {
                <= 6 => configuration, // 0: described by a program config element, not counted here
                7 or 12 or 14 => 8,
                11 => 7,
                13 => 24,
                _ => throw new FormatException($"reserved AAC channel configuration {configuration}"),
            };
            if (objectType is not (5 or 29))
            {
                return new AudioSpecificConfig(objectType, rate, channels) { ChannelConfiguration = configuration };
            }

            // Explicit SBR (and PS): the output rate, then the core's own object type.
            var output = ReadRate(ref r);
            return new AudioSpecificConfig(objectType, output, channels)
            {
                CoreObjectType = ReadObjectType(ref r), CoreSampleRate = rate, ChannelConfiguration = configuration,
            };
        }
        catch (FormatException e) when (e.Message == "bitstream ended early")
        {
            throw new FormatException("AudioSpecificConfig is truncated", e);
        }
    }

    private static int ReadObjectType(ref BitReader r)
    {
        var objectType = (int)r.ReadBits(5);
        return objectType == 31 ? 32 + (int)r.ReadBits(6) : objectType;
    }

    private static int ReadRate(ref BitReader r)
    {
        var index = (int)r.ReadBits(4);
        var rate = index switch
        {
            15 => (int)r.ReadBits(24),
            < 13 => SampleRates[index],
            _ => throw new FormatException($"reserved AAC sampling frequency index {index}"),
        };
        return rate is > 0 and <= 96000 ? rate : throw new FormatException($"AAC sample rate of {rate} Hz is out of range");
    }
}
