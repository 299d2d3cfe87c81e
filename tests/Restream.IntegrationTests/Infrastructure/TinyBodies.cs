namespace Restream.IntegrationTests.Infrastructure;

/// <summary>
/// The smallest FLV video and audio bodies the hub and the relay tell apart (sequence header,
/// keyframe, interframe; they never look further): for tests that publish into a hub by hand.
/// </summary>
internal static class TinyBodies
{
    public static readonly byte[] VideoHeader = [0x17, 0x00, 0, 0, 0, 1, 0x64, 0, 0x1F];
    public static readonly byte[] AudioHeader = [0xAF, 0x00, 0x11, 0x90];
    public static readonly byte[] Keyframe = [0x17, 0x01, 0, 0, 0, 1, 2, 3, 4];
    public static readonly byte[] Interframe = [0x27, 0x01, 0, 0, 0, 5, 6, 7, 8];
    public static readonly byte[] Audio = [0xAF, 0x01, 9, 9, 9, 9];
}
