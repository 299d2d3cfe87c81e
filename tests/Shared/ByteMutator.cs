namespace Restream.Tests;

/// <summary>Damages byte streams at random for the fuzz tests (Restream.Media.Tests and Restream.IntegrationTests link this file).</summary>
public static class ByteMutator
{
    private static readonly uint[] EdgeValues = [0, 1, 0x7F, 0x80, 0xFF, 0x7FFF, 0xFFFF, 0xFFFFFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF];

    /// <summary>
    /// One to four kinds of damage: a bit flipped, a byte set to an edge value, four bytes overwritten by a
    /// big-endian edge value (lengths, sizes, timestamps), a range cut, random bytes inserted, a range copied
    /// elsewhere. Half of it lands in the first <paramref name="head"/> bytes, where a session's commands,
    /// metadata and sequence headers are. Returns the damaged bytes and what was done, to reproduce a failure.
    /// </summary>
    public static (byte[] Bytes, string What) Mutate(byte[] source, Random random, int head = 8192)
    {
        var bytes = new List<byte>(source);
        var steps = new List<string>();
        for (var n = random.Next(1, 5); n > 0 && bytes.Count > 1; n--)
        {
            // Half the damage lands in the head.
            var at = random.Next(2) == 0 ? random.Next(Math.Min(head, bytes.Count)) : random.Next(bytes.Count);
            switch (random.Next(6))
            {
                case 0:
                    var bit = random.Next(8);
                    bytes[at] ^= (byte)(1 << bit);
                    steps.Add($"flip bit {bit} at {at}");
                    break;
                case 1:
                    var value = (byte)EdgeValues[random.Next(5)];
                    bytes[at] = value;
                    steps.Add($"byte {value} at {at}");
                    break;
                case 2:
                    var edge = EdgeValues[random.Next(EdgeValues.Length)];
                    for (var k = 0; k < 4 && at + k < bytes.Count; k++)
                    {
                        bytes[at + k] = (byte)(edge >> (24 - 8 * k));
                    }

                    steps.Add($"uint32 {edge:X} at {at}");
                    break;
                case 3:
                    var cut = Math.Min(random.Next(1, 64), bytes.Count - at);
                    bytes.RemoveRange(at, cut);
                    steps.Add($"cut {cut} at {at}");
                    break;
                case 4:
                    var junk = new byte[random.Next(1, 64)];
                    random.NextBytes(junk);
                    bytes.InsertRange(at, junk);
                    steps.Add($"insert {junk.Length} at {at}");
                    break;
                default:
                    var from = random.Next(bytes.Count);
                    var length = Math.Min(random.Next(1, 256), bytes.Count - from);
                    bytes.InsertRange(at, bytes.GetRange(from, length));
                    steps.Add($"copy {length} from {from} to {at}");
                    break;
            }
        }

        return (bytes.ToArray(), string.Join("; ", steps));
    }
}
