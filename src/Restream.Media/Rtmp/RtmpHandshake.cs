using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text;

namespace Restream.Media.Rtmp;

/// <summary>
/// The RTMP handshake (RTMP 5.2) in both forms peers use: the simple one of the specification, and
/// the digest ("complex") one of Flash Player and FFmpeg, where C1 carries an HMAC-SHA256 digest
/// and a server answers with a digest of its own so the client can validate it.
/// </summary>
public static class RtmpHandshake
{
    public const byte Version = 3;
    public const int PacketSize = 1536;
    public const int DigestLength = 32;

    private static readonly byte[] KeyTail =
    [
        0xF0, 0xEE, 0xC2, 0x4A, 0x80, 0x68, 0xBE, 0xE8, 0x2E, 0x00, 0xD0, 0xD1, 0x02, 0x9E, 0x7E, 0x57,
        0x6E, 0xEC, 0x5D, 0x2D, 0x29, 0x80, 0x6F, 0xAB, 0x93, 0xB8, 0xE6, 0x36, 0xCF, 0xEB, 0x31, 0xAE,
    ];

    /// <summary>"Genuine Adobe Flash Player 001" and the shared tail: the client's key.</summary>
    internal static readonly byte[] PlayerKey = [.. Encoding.ASCII.GetBytes("Genuine Adobe Flash Player 001"), .. KeyTail];

    /// <summary>"Genuine Adobe Flash Media Server 001" and the shared tail: the server's key.</summary>
    internal static readonly byte[] ServerKey = [.. Encoding.ASCII.GetBytes("Genuine Adobe Flash Media Server 001"), .. KeyTail];

    private const int PlayerKeyTextLength = 30;
    private const int ServerKeyTextLength = 36;

    /// <summary>Where the 764-byte digest block starts in each scheme (0: digest first, 1: key first).</summary>
    private static readonly int[] DigestBlockOffsets = [8, 772];

    /// <summary>Writes C0 and C1. With <paramref name="digest"/>, C1 carries a Flash Player digest.</summary>
    public static void WriteC0C1(Span<byte> destination, uint time, bool digest)
    {
        destination[0] = Version;
        var c1 = destination.Slice(1, PacketSize);
        RandomNumberGenerator.Fill(c1);
        BinaryPrimitives.WriteUInt32BigEndian(c1, time);
        if (digest)
        {
            // The version FFmpeg announces: 9.0.124.2.
            BinaryPrimitives.WriteUInt32BigEndian(c1[4..], 0x09007C02);
            Imprint(c1, DigestBlockOffsets[0], PlayerKey.AsSpan(0, PlayerKeyTextLength));
        }
        else
        {
            BinaryPrimitives.WriteUInt32BigEndian(c1[4..], 0);
        }
    }

    /// <summary>Finds a valid Flash Player digest in C1; returns its offset, or -1 for a simple C1.</summary>
    public static int FindClientDigest(ReadOnlySpan<byte> c1) => FindDigest(c1, PlayerKey.AsSpan(0, PlayerKeyTextLength));

    /// <summary>Finds a valid server digest in S1; returns its offset, or -1.</summary>
    public static int FindServerDigest(ReadOnlySpan<byte> s1) => FindDigest(s1, ServerKey.AsSpan(0, ServerKeyTextLength));

    /// <summary>
    /// Writes S0, S1 and S2 in answer to C1. A digest C1 gets a digest S1 and an S2 signed with a key
    /// derived from the client's digest; a simple C1 gets S2 as an echo of C1.
    /// </summary>
    public static void WriteS0S1S2(ReadOnlySpan<byte> c1, Span<byte> destination, uint time)
    {
        destination[0] = Version;
        var s1 = destination.Slice(1, PacketSize);
        var s2 = destination.Slice(1 + PacketSize, PacketSize);
        RandomNumberGenerator.Fill(s1);
        BinaryPrimitives.WriteUInt32BigEndian(s1, time);

        var clientDigest = FindClientDigest(c1);
        if (clientDigest < 0)
        {
            BinaryPrimitives.WriteUInt32BigEndian(s1[4..], 0);
            c1.CopyTo(s2);
            return;
        }

        // Server version as nginx-rtmp announces it; FFmpeg validates our digest when it is >= 3.
        BinaryPrimitives.WriteUInt32BigEndian(s1[4..], 0x0D0E0A0D);
        Imprint(s1, DigestBlockOffsets[0], ServerKey.AsSpan(0, ServerKeyTextLength));

        RandomNumberGenerator.Fill(s2);
        Span<byte> key = stackalloc byte[DigestLength];
        HMACSHA256.HashData(ServerKey, c1.Slice(clientDigest, DigestLength), key);
        HMACSHA256.HashData(key, s2[..(PacketSize - DigestLength)], s2[(PacketSize - DigestLength)..]);
    }

    /// <summary>Checks the server's S2 signature against the digest we sent in C1.</summary>
    public static bool ValidateServerS2(ReadOnlySpan<byte> c1, ReadOnlySpan<byte> s2)
    {
        var clientDigest = FindClientDigest(c1);
        if (clientDigest < 0)
        {
            return false;
        }

        Span<byte> key = stackalloc byte[DigestLength];
        Span<byte> expected = stackalloc byte[DigestLength];
        HMACSHA256.HashData(ServerKey, c1.Slice(clientDigest, DigestLength), key);
        HMACSHA256.HashData(key, s2[..(PacketSize - DigestLength)], expected);
        return CryptographicOperations.FixedTimeEquals(expected, s2[(PacketSize - DigestLength)..]);
    }

    private static int DigestOffset(ReadOnlySpan<byte> packet, int blockOffset) =>
        (packet[blockOffset] + packet[blockOffset + 1] + packet[blockOffset + 2] + packet[blockOffset + 3]) % 728 + blockOffset + 4;

    private static int FindDigest(ReadOnlySpan<byte> packet, ReadOnlySpan<byte> key)
    {
        if (packet.Length < PacketSize)
        {
            return -1;
        }

        Span<byte> computed = stackalloc byte[DigestLength];
        foreach (var blockOffset in DigestBlockOffsets)
        {
            var offset = DigestOffset(packet, blockOffset);
            ComputeDigest(packet, offset, key, computed);
            if (CryptographicOperations.FixedTimeEquals(computed, packet.Slice(offset, DigestLength)))
            {
                return offset;
            }
        }

        return -1;
    }

    private static void Imprint(Span<byte> packet, int blockOffset, ReadOnlySpan<byte> key)
    {
        var offset = DigestOffset(packet, blockOffset);
        Span<byte> digest = stackalloc byte[DigestLength];
        ComputeDigest(packet, offset, key, digest);
        digest.CopyTo(packet[offset..]);
    }

    /// <summary>HMAC-SHA256 over the packet without the 32 digest bytes at <paramref name="offset"/>.</summary>
    private static void ComputeDigest(ReadOnlySpan<byte> packet, int offset, ReadOnlySpan<byte> key, Span<byte> digest)
    {
        Span<byte> message = stackalloc byte[PacketSize - DigestLength];
        packet[..offset].CopyTo(message);
        packet[(offset + DigestLength)..PacketSize].CopyTo(message[offset..]);
        HMACSHA256.HashData(key, message, digest);
    }
}
