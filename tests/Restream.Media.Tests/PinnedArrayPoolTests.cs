namespace Restream.Media.Tests;

/// <summary>The media buffer pool: power-of-two sizes, reuse, and what it refuses.</summary>
public sealed class PinnedArrayPoolTests
{
    [Theory]
    [InlineData(0, 16)]
    [InlineData(1, 16)]
    [InlineData(16, 16)]
    [InlineData(17, 32)]
    [InlineData(4096, 4096)]
    [InlineData(12_345, 16_384)]
    public void Rents_the_next_power_of_two(int asked, int length)
    {
        var pool = new PinnedArrayPool(maxArrayLength: 1 << 20, maxArraysPerBucket: 4);
        Assert.Equal(length, pool.Rent(asked).Length);
    }

    [Fact]
    public void A_returned_array_is_rented_again_and_a_full_bucket_lets_arrays_go()
    {
        var pool = new PinnedArrayPool(maxArrayLength: 1 << 20, maxArraysPerBucket: 2);
        var a = pool.Rent(1000);
        var b = pool.Rent(1000);
        var c = pool.Rent(1000);
        pool.Return(a);
        pool.Return(b);
        pool.Return(c); // the bucket holds two: this one goes to the GC
        Assert.Same(b, pool.Rent(1000));
        Assert.Same(a, pool.Rent(1000));
        Assert.NotSame(c, pool.Rent(1000));
    }

    [Fact]
    public void Arrays_above_the_largest_size_are_rented_unpooled_and_foreign_arrays_are_refused()
    {
        var pool = new PinnedArrayPool(maxArrayLength: 1024, maxArraysPerBucket: 2);
        var big = pool.Rent(5000);
        Assert.Equal(5000, big.Length);
        pool.Return(big); // accepted and dropped
        Assert.NotSame(big, pool.Rent(5000));
        Assert.Throws<ArgumentException>(() => pool.Return(new byte[100]));
        pool.Return([]); // an empty body's array: nothing to keep
    }

    [Fact]
    public void Chunked_frames_live_in_arrays_the_GC_does_not_move()
    {
        // The relay hands these addresses to sendmsg without pinning them: they must be pinned already.
        using var owner = new FrameOwner(MediaFrame.Copy(MediaKind.Video, 40, new byte[10_000]));
        var chunked = owner.Frame.GetChunked(4096, 1, out _);
        Assert.True(System.Runtime.InteropServices.MemoryMarshal.TryGetArray(chunked, out var segment));
        var before = Address(segment.Array!);
        GC.Collect(2, GCCollectionMode.Forced, blocking: true, compacting: true);
        Assert.Equal(before, Address(segment.Array!));
        Assert.Equal(2, GC.GetGeneration(segment.Array!)); // the pinned object heap is collected with gen 2
    }

    private static nint Address(byte[] array)
    {
        var handle = System.Runtime.InteropServices.GCHandle.Alloc(array, System.Runtime.InteropServices.GCHandleType.Pinned);
        try
        {
            return handle.AddrOfPinnedObject(); // pinned only for this look, not during the collection
        }
        finally
        {
            handle.Free();
        }
    }

    private sealed class FrameOwner(MediaFrame frame) : IDisposable
    {
        public MediaFrame Frame { get; } = frame;
        public void Dispose() => Frame.Release();
    }
}
