using Restream.Ingest.Rtmp;
using Xunit;

namespace Restream.Media.Tests;

public class WriteGateTests
{
    [Fact]
    public void Only_one_holder_at_a_time_and_leaving_frees_it()
    {
        var gate = new WriteGate();
        Assert.True(gate.TryEnter());
        Assert.False(gate.TryEnter());
        gate.Exit();
        Assert.True(gate.TryEnter());
        gate.Exit();
    }

    [Fact]
    public async Task Waiters_get_the_gate_in_the_order_they_came()
    {
        var gate = new WriteGate();
        Assert.True(gate.TryEnter());
        var order = new List<int>();
        var waiters = Enumerable.Range(1, 3).Select(i => Take(i)).ToArray();
        Assert.All(waiters, w => Assert.False(w.IsCompleted));
        Assert.False(gate.TryEnter()); // waiting in line, nobody may cut in

        gate.Exit();
        await Task.WhenAll(waiters).WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal([1, 2, 3], order);
        Assert.True(gate.TryEnter()); // the last one left it free
        gate.Exit();

        async Task Take(int id)
        {
            await gate.EnterAsync(CancellationToken.None);
            lock (order)
            {
                order.Add(id);
            }

            await Task.Yield();
            gate.Exit();
        }
    }

    [Fact]
    public async Task A_cancelled_waiter_never_holds_the_gate_and_the_next_one_still_gets_it()
    {
        var gate = new WriteGate();
        Assert.True(gate.TryEnter());
        using var cancel = new CancellationTokenSource();
        var cancelled = gate.EnterAsync(cancel.Token).AsTask();
        var next = gate.EnterAsync(CancellationToken.None).AsTask();
        await cancel.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => cancelled).WaitAsync(TimeSpan.FromSeconds(10));
        Assert.False(next.IsCompleted);

        gate.Exit(); // hands over past the cancelled waiter
        await next.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.False(gate.TryEnter());
        gate.Exit();
        Assert.True(gate.TryEnter());
        gate.Exit();
    }

    [Fact]
    public async Task A_waiter_cancelled_after_everyone_left_leaves_the_gate_free()
    {
        var gate = new WriteGate();
        Assert.True(gate.TryEnter());
        using var cancel = new CancellationTokenSource();
        var waiter = gate.EnterAsync(cancel.Token).AsTask();
        await cancel.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => waiter).WaitAsync(TimeSpan.FromSeconds(10));

        gate.Exit(); // the queue is empty by now: free, not handed to the cancelled one
        Assert.True(gate.TryEnter());
        gate.Exit();
    }

    [Fact]
    public async Task Many_threads_taking_it_every_way_never_overlap()
    {
        var gate = new WriteGate();
        var inside = 0;
        var overlaps = 0;
        var entries = 0;
        var workers = Enumerable.Range(0, 8).Select(worker => Task.Run(async () =>
        {
            using var cancel = new CancellationTokenSource();
            for (var i = 0; i < 2_000; i++)
            {
                bool held;
                if ((i + worker) % 3 == 0)
                {
                    held = gate.TryEnter();
                }
                else
                {
                    // Some waits are cancelled at once: they must either hold the gate or not, never half.
                    using var soon = i % 7 == 0 ? new CancellationTokenSource(TimeSpan.FromTicks(1)) : null;
                    try
                    {
                        await gate.EnterAsync(soon?.Token ?? CancellationToken.None);
                        held = true;
                    }
                    catch (OperationCanceledException)
                    {
                        held = false;
                    }
                }

                if (!held)
                {
                    continue;
                }

                if (Interlocked.Increment(ref inside) != 1)
                {
                    Interlocked.Increment(ref overlaps);
                }

                Interlocked.Increment(ref entries);
                if (i % 5 == 0)
                {
                    await Task.Yield();
                }

                Interlocked.Decrement(ref inside);
                gate.Exit();
            }
        })).ToArray();

        await Task.WhenAll(workers).WaitAsync(TimeSpan.FromSeconds(60));
        Assert.Equal(0, overlaps);
        Assert.True(entries > 8_000, $"{entries} entries");
        Assert.True(gate.TryEnter()); // nobody left holding it
        gate.Exit();
    }
}
