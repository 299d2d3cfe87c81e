namespace Restream.Ingest.Rtmp;

/// <summary>
/// The write lock of one connection: one writer at a time, waiters served in order. Taking and
/// leaving it without contention is one compare-and-swap on one field, which matters on the relay's
/// hot path: the publisher's thread takes every destination's gate once per read, after ~20 ms away,
/// and each extra object it touches then is a cache miss (a <see cref="SemaphoreSlim"/> is two
/// objects and two monitor round trips). Waiters queue only under contention.
/// </summary>
internal sealed class WriteGate
{
    private const int Free = 0;
    private const int Held = 1;
    private const int HeldWithWaiters = 2; // leaving goes through the queue (which may have emptied by cancellation)

    private readonly Queue<TaskCompletionSource> _waiters = new(); // also the lock for every change from or to HeldWithWaiters
    private int _state;

    /// <summary>Takes the gate if nobody holds it; never waits.</summary>
    public bool TryEnter() => Interlocked.CompareExchange(ref _state, Held, Free) == Free;

    /// <summary>
    /// Takes the gate, waiting behind earlier waiters. Cancelled while waiting, it throws and the gate
    /// is not held; once this completes normally the caller holds it and must <see cref="Exit"/>.
    /// </summary>
    public ValueTask EnterAsync(CancellationToken cancellationToken)
    {
        if (TryEnter())
        {
            return ValueTask.CompletedTask;
        }

        cancellationToken.ThrowIfCancellationRequested();
        TaskCompletionSource waiter;
        lock (_waiters)
        {
            while (true)
            {
                var state = Volatile.Read(ref _state);
                if (state == Free)
                {
                    if (TryEnter())
                    {
                        return ValueTask.CompletedTask;
                    }
                }
                else if (state == HeldWithWaiters || Interlocked.CompareExchange(ref _state, HeldWithWaiters, Held) == Held)
                {
                    break;
                }
            }

            // The holder hands the gate over with TrySetResult; a cancellation that wins the race
            // leaves the waiter completed, so the hand-over skips it.
            waiter = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            _waiters.Enqueue(waiter);
        }

        return WaitAsync(waiter, cancellationToken);
    }

    /// <summary>Leaves the gate: the longest waiter, if any, holds it next.</summary>
    public void Exit()
    {
        if (Interlocked.CompareExchange(ref _state, Free, Held) == Held)
        {
            return;
        }

        lock (_waiters)
        {
            while (_waiters.TryDequeue(out var waiter))
            {
                if (waiter.TrySetResult())
                {
                    if (_waiters.Count == 0)
                    {
                        Volatile.Write(ref _state, Held); // the next exit needs no lock
                    }

                    return;
                }
            }

            Volatile.Write(ref _state, Free);
        }
    }

    private static async ValueTask WaitAsync(TaskCompletionSource waiter, CancellationToken cancellationToken)
    {
        await using (cancellationToken.UnsafeRegister(static (state, token) => ((TaskCompletionSource)state!).TrySetCanceled(token), waiter).ConfigureAwait(false))
        {
            await waiter.Task.ConfigureAwait(false);
        }
    }
}
