using System.Security.Cryptography;
using System.Text;

namespace Restream.Server.Storage;

/// <summary>
/// Generated secrets (stream keys, API keys) of the form <c>{prefix}_{id}_{secret}</c>. The id finds the
/// record; the whole key is checked against a salted SHA-256 hash with a fixed-time comparison. The
/// secrets are 190 random bits, so a fast hash is enough (they are not passwords).
/// </summary>
public static class SecretKeys
{
    private const string Alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";

    public sealed record Issued(string Key, string Id, byte[] Salt, byte[] Hash);

    public static Issued Issue(string prefix)
    {
        var id = Random(10).ToLowerInvariant();
        var key = $"{prefix}_{id}_{Random(32)}";
        var salt = RandomNumberGenerator.GetBytes(16);
        return new Issued(key, id, salt, Hash(salt, key));
    }

    /// <summary>The id part of a key of ours, or null when it is not one.</summary>
    public static string? IdOf(string key, string prefix)
    {
        var parts = key.Split('_');
        return parts.Length == 3 && parts[0] == prefix && parts[1].Length == 10 && parts[2].Length == 32 ? parts[1] : null;
    }

    public static bool Verify(string key, byte[] salt, byte[] hash) => CryptographicOperations.FixedTimeEquals(Hash(salt, key), hash);

    public static byte[] Hash(byte[] salt, string key)
    {
        var bytes = Encoding.UTF8.GetBytes(key);
        var input = new byte[salt.Length + bytes.Length];
        salt.CopyTo(input, 0);
        bytes.CopyTo(input, salt.Length);
        return SHA256.HashData(input);
    }

    private static string Random(int length) => RandomNumberGenerator.GetString(Alphabet, length);
}
