using System.Buffers;

namespace Restream.Media;

/// <summary>
/// The pool every media body and chunked copy comes from. A live stream keeps a whole GOP (often
/// hundreds of frames) out of the pool at once and gives it back at the next keyframe;
/// <see cref="ArrayPool{T}.Shared"/> keeps only a few arrays per size and would let the rest go to
/// the GC, so steady state would allocate. This pool keeps enough to cover that.
/// </summary>
public static class MediaBuffers
{
    public static ArrayPool<byte> Pool { get; } = ArrayPool<byte>.Create(maxArrayLength: 16 * 1024 * 1024, maxArraysPerBucket: 1024);
}
