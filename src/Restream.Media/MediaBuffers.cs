using System.Buffers;
using System.Numerics;

namespace Restream.Media;

/// <summary>
/// The pool every media body and chunked copy comes from. A live stream keeps a whole GOP (often
/// hundreds of frames) out of the pool at once and gives it back at the next keyframe;
/// <see cref="ArrayPool{T}.Shared"/> keeps only a few arrays per size and would let the rest go to
/// the GC, so steady state would allocate. This pool keeps enough to cover that.
/// </summary>
public static class MediaBuffers
{
    /// <summary>
    /// Every array it hands out lives on the pinned object heap: the GC never moves it, so a send
    /// can hand its address to the kernel without pinning it first (see <see cref="PinnedArrayPool"/>).
    /// </summary>
    public static PinnedArrayPool Pool { get; } = new(maxArrayLength: 16 * 1024 * 1024, maxArraysPerBucket: 1024);
}

/// <summary>
/// An <see cref="ArrayPool{T}"/> of byte arrays allocated on the pinned object heap, in power-of-two
/// sizes from 16 bytes. A gathering <c>sendmsg</c> of several frames' chunked bytes then costs no
/// <see cref="System.Runtime.InteropServices.GCHandle"/> per buffer, which is most of what .NET's
/// own gathering send spends outside the kernel. Arrays above the largest size are allocated and
/// dropped, unpooled (and pinned all the same).
/// </summary>
public sealed class PinnedArrayPool : ArrayPool<byte>
{
    private const int MinShift = 4;
    private readonly Bucket[] _buckets;
    private readonly int _maxArrayLength;

    public PinnedArrayPool(int maxArrayLength, int maxArraysPerBucket)
    {
        _maxArrayLength = (int)BitOperations.RoundUpToPowerOf2((uint)Math.Max(maxArrayLength, 1 << MinShift));
        _buckets = new Bucket[BucketIndex(_maxArrayLength) + 1];
        for (var i = 0; i < _buckets.Length; i++)
        {
            _buckets[i] = new Bucket(1 << (i + MinShift), maxArraysPerBucket);
        }
    }

    public override byte[] Rent(int minimumLength)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(minimumLength);
        if (minimumLength > _maxArrayLength)
        {
            return GC.AllocateUninitializedArray<byte>(minimumLength, pinned: true);
        }

        return _buckets[BucketIndex(Math.Max(minimumLength, 1))].Rent();
    }

    public override void Return(byte[] array, bool clearArray = false)
    {
        ArgumentNullException.ThrowIfNull(array);
        if (array.Length > _maxArrayLength || array.Length < 1 << MinShift || !BitOperations.IsPow2(array.Length))
        {
            if (array.Length <= _maxArrayLength && array.Length != 0)
            {
                throw new ArgumentException("the array did not come from this pool", nameof(array));
            }

            return; // an oversized rental: the GC takes it back
        }

        if (clearArray)
        {
            Array.Clear(array);
        }

        _buckets[BucketIndex(array.Length)].Return(array);
    }

    private static int BucketIndex(int length) => Math.Max(0, BitOperations.Log2((uint)length - 1) + 1 - MinShift);

    private sealed class Bucket(int length, int capacity)
    {
        private readonly byte[]?[] _arrays = new byte[capacity][];
        private SpinLock _lock = new(enableThreadOwnerTracking: false);
        private int _count;

        public byte[] Rent()
        {
            byte[]? array = null;
            var taken = false;
            try
            {
                _lock.Enter(ref taken);
                if (_count > 0)
                {
                    array = _arrays[--_count];
                    _arrays[_count] = null;
                }
            }
            finally
            {
                if (taken)
                {
                    _lock.Exit(useMemoryBarrier: false);
                }
            }

            return array ?? GC.AllocateUninitializedArray<byte>(length, pinned: true);
        }

        public void Return(byte[] array)
        {
            var taken = false;
            try
            {
                _lock.Enter(ref taken);
                if (_count < _arrays.Length)
                {
                    _arrays[_count++] = array;
                }
            }
            finally
            {
                if (taken)
                {
                    _lock.Exit(useMemoryBarrier: false);
                }
            }
        }
    }
}
