namespace Restream.Media.Codecs;

/// <summary>Reads bits MSB-first with Exp-Golomb codes (H.264 9.1) from an RBSP.</summary>
internal ref struct BitReader(ReadOnlySpan<byte> data)
{
    private readonly ReadOnlySpan<byte> _data = data;
    private int _bit;

    public uint ReadBits(int count)
    {
        uint value = 0;
        for (var i = 0; i < count; i++)
        {
            value = value << 1 | ReadBit();
        }

        return value;
    }

    public uint ReadBit()
    {
        if (_bit >= _data.Length * 8)
        {
            throw new FormatException("bitstream ended early");
        }

        var bit = (uint)(_data[_bit >> 3] >> (7 - (_bit & 7))) & 1;
        _bit++;
        return bit;
    }

    public bool ReadFlag() => ReadBit() == 1;

    public uint ReadUe()
    {
        var zeros = 0;
        while (ReadBit() == 0)
        {
            if (++zeros > 31)
            {
                throw new FormatException("Exp-Golomb code longer than 32 bits");
            }
        }

        return zeros == 0 ? 0 : (uint)((1L << zeros) - 1 + ReadBits(zeros));
    }

    public int ReadSe()
    {
        var k = ReadUe();
        return (k & 1) == 1 ? (int)((k + 1) / 2) : -(int)(k / 2);
    }
}
