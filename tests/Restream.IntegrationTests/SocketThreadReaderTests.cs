using System.Buffers;
using System.Diagnostics;
using System.IO.Pipelines;
using System.Net.Sockets;
using System.Text;
using Restream.IntegrationTests.Infrastructure;
using Restream.Ingest.Rtmp;

namespace Restream.IntegrationTests;

/// <summary>The ingest's receive thread, on a real loopback TCP connection.</summary>
public sealed class SocketThreadReaderTests : IAsyncLifetime
{
    private LoopbackPair _pair = null!;
    private Socket _publisher = null!;
    private Socket _ingest = null!;

    public async Task InitializeAsync()
    {
        _pair = await LoopbackPair.OpenAsync(new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true });
        (_publisher, _ingest) = (_pair.Client, _pair.Server);
        _ingest.Blocking = false; // as RtmpConnection leaves it: sends never wait
    }

    public Task DisposeAsync()
    {
        _pair.Dispose();
        return Task.CompletedTask;
    }

    [Fact]
    public Task The_reader_continues_on_the_receive_thread_and_reads_there_without_a_hop() =>
        Task.Run(async () => // no synchronization context, as in the server: awaits continue where they complete
        {
            var reader = new SocketThreadReader(_ingest);
            var first = reader.ReadAsync(CancellationToken.None);
            Assert.False(first.IsCompleted); // nothing sent yet: the read waits on the receive thread

            var sender = SendLaterAsync("hello");
            var result = await first; // waits here until the bytes come
            Assert.Equal("hello", Text(result.Buffer));
            Assert.Same(reader.ReceiveThread, Thread.CurrentThread);
            var firstSender = sender; // awaited last: awaiting it here could move us off the receive thread

            // Everything was examined: the next read waits for new bytes, on this thread, in place.
            reader.AdvanceTo(result.Buffer.End);
            sender = SendLaterAsync("world");
            var second = reader.ReadAsync(CancellationToken.None);
            Assert.True(second.IsCompleted, "a read on the receive thread completes in place, without a hand-off");
            Assert.Equal("world", Text((await second).Buffer));
            await Task.WhenAll(firstSender, sender);
            reader.Complete();
        });

    [Fact]
    public async Task Unconsumed_bytes_come_back_and_examined_ones_wait_for_more()
    {
        var reader = new SocketThreadReader(_ingest);
        await _publisher.SendAsync("abcde"u8.ToArray());
        var result = await reader.ReadAsync(CancellationToken.None).AsTask().WaitAsync(TimeSpan.FromSeconds(5));
        Assert.Equal("abcde", Text(result.Buffer));

        // Consumed two, examined two: the other three are returned at once.
        reader.AdvanceTo(result.Buffer.GetPosition(2));
        Assert.True(reader.TryRead(out result));
        Assert.Equal("cde", Text(result.Buffer));

        // Nothing consumed, all examined (half a message): the next read brings the rest with it.
        reader.AdvanceTo(result.Buffer.Start, result.Buffer.End);
        Assert.False(reader.TryRead(out _));
        await _publisher.SendAsync("fg"u8.ToArray());
        result = await reader.ReadAsync(CancellationToken.None).AsTask().WaitAsync(TimeSpan.FromSeconds(5));
        Assert.Equal("cdefg", Text(result.Buffer));
        reader.Complete();
    }

    [Fact]
    public async Task A_message_larger_than_the_buffer_grows_it()
    {
        var reader = new SocketThreadReader(_ingest, bufferSize: 32 * 1024);
        var message = new byte[300_000];
        Random.Shared.NextBytes(message);
        var send = _publisher.SendAsync(message);

        ReadResult result;
        do
        {
            result = await reader.ReadAsync(CancellationToken.None).AsTask().WaitAsync(TimeSpan.FromSeconds(5));
            if (result.Buffer.Length < message.Length)
            {
                reader.AdvanceTo(result.Buffer.Start, result.Buffer.End); // like a chunk parser waiting for the whole message
            }
        }
        while (result.Buffer.Length < message.Length);

        Assert.Equal(message, result.Buffer.ToArray());
        await send;
        reader.AdvanceTo(result.Buffer.End);
        reader.Complete();
    }

    [Fact]
    public async Task Bytes_left_below_the_low_water_mark_are_taken_after_the_wait_limit()
    {
        _ingest.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReceiveLowWater, 5_000);
        var reader = new SocketThreadReader(_ingest);

        // No limit: a small frame below the mark waits for more bytes.
        var read = reader.ReadAsync(CancellationToken.None).AsTask();
        await _publisher.SendAsync(new byte[10]);
        await Task.WhenAny(read, Task.Delay(300));
        Assert.False(read.IsCompleted, "10 bytes below a 5000-byte mark woke the reader");
        await _publisher.SendAsync(new byte[5_000]); // the next video frame: both are read at once
        var result = await read.WaitAsync(TimeSpan.FromSeconds(5));
        Assert.Equal(5_010, result.Buffer.Length);
        reader.AdvanceTo(result.Buffer.End);

        // With a limit, the next small frame is taken once the limit has passed. (It is sent before
        // the read: the test may be running on the receive thread now, where a read waits in place.)
        reader.WaitLimit = TimeSpan.FromMilliseconds(50);
        var watch = Stopwatch.StartNew();
        await _publisher.SendAsync(new byte[10]);
        result = await reader.ReadAsync(CancellationToken.None).AsTask().WaitAsync(TimeSpan.FromSeconds(5));
        Assert.Equal(10, result.Buffer.Length);
        Assert.True(watch.Elapsed < TimeSpan.FromSeconds(4), $"the small frame waited {watch.Elapsed}");
        reader.AdvanceTo(result.Buffer.End);
        reader.Complete();
    }

    [Fact]
    public Task A_hold_keeps_data_in_the_kernel_without_touching_the_mark_and_a_wait_mark_stays_until_another_is_wanted() =>
        Task.Run(async () =>
        {
            var reader = new SocketThreadReader(_ingest);
            var pacer = new ScriptedPacer([WaitMark.Hold, WaitMark.Hold, WaitMark.Audio, WaitMark.Audio, WaitMark.Merged]) { MarkBytes = 64, AudioMarkBytes = 8 };
            reader.Pacer = pacer;

            // Two holds in a row: what arrives stays in the kernel until each hold's time is up, and
            // the socket's low-water mark is never changed for them (a hold ignores data without one).
            for (var i = 0; i < 2; i++)
            {
                await _publisher.SendAsync(new byte[10]); // sent first: a read on the receive thread waits in place
                var watch = Stopwatch.StartNew();
                var held = await reader.ReadAsync(CancellationToken.None).AsTask().WaitAsync(TimeSpan.FromSeconds(5));
                Assert.Equal(10, held.Buffer.Length);
                Assert.True(watch.Elapsed >= TimeSpan.FromMilliseconds(20), $"a hold of 30 ms ended after {watch.Elapsed.TotalMilliseconds:0} ms");
                reader.AdvanceTo(held.Buffer.End);
                Assert.Equal(0, reader.MarkChanges);
                Assert.Equal(1, (int)_ingest.GetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReceiveLowWater)!);
            }

            // Two audio waits (bounded, as the planner's are): the audio mark is set once and stays.
            for (var i = 0; i < 2; i++)
            {
                await _publisher.SendAsync(new byte[10]);
                var audio = await reader.ReadAsync(CancellationToken.None).AsTask().WaitAsync(TimeSpan.FromSeconds(5));
                Assert.Equal(10, audio.Buffer.Length);
                reader.AdvanceTo(audio.Buffer.End);
                Assert.Equal(1, reader.MarkChanges);
                Assert.Equal(8, (int)_ingest.GetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReceiveLowWater)!);
            }

            // An unbounded merged wait: the pacer's own mark is back before it.
            await _publisher.SendAsync(new byte[100]);
            var result = await reader.ReadAsync(CancellationToken.None).AsTask().WaitAsync(TimeSpan.FromSeconds(5));
            Assert.Equal(100, result.Buffer.Length);
            Assert.Equal(2, reader.MarkChanges);
            Assert.Equal(64, (int)_ingest.GetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReceiveLowWater)!);
            reader.AdvanceTo(result.Buffer.End);
            reader.Complete();
        });

    [Fact]
    public Task A_hold_ends_at_once_when_the_publisher_hangs_up() =>
        Task.Run(async () =>
        {
            var reader = new SocketThreadReader(_ingest) { Pacer = new ScriptedPacer([WaitMark.Hold]) { HoldMilliseconds = 30_000 } };
            await _publisher.SendAsync(new byte[10]);
            var read = reader.ReadAsync(CancellationToken.None).AsTask(); // waits in a 30 s hold on the receive thread
            await Task.Delay(200);
            Assert.False(read.IsCompleted, "the hold took data although it ignores it");
            _publisher.Shutdown(SocketShutdown.Send);

            // Not held for its 30 s: the FIN ends the hold, and the data and the end are read.
            var result = await read.WaitAsync(TimeSpan.FromSeconds(10));
            var bytes = result.Buffer.Length;
            while (!result.IsCompleted)
            {
                reader.AdvanceTo(result.Buffer.Start, result.Buffer.End);
                result = await reader.ReadAsync(CancellationToken.None).AsTask().WaitAsync(TimeSpan.FromSeconds(10));
                bytes = result.Buffer.Length;
            }

            Assert.Equal(10, bytes);
            reader.Complete();
        });

    [Fact]
    public Task A_read_cancelled_during_a_hold_ends_at_once() =>
        Task.Run(async () =>
        {
            var reader = new SocketThreadReader(_ingest) { Pacer = new ScriptedPacer([WaitMark.Hold]) { HoldMilliseconds = 30_000 } };
            using var cancel = new CancellationTokenSource();
            var read = reader.ReadAsync(cancel.Token).AsTask(); // a 30 s hold on the receive thread
            await Task.Delay(200);
            Assert.False(read.IsCompleted);
            await cancel.CancelAsync(); // shuts reading down, which ends the hold

            await Assert.ThrowsAnyAsync<OperationCanceledException>(() => read.WaitAsync(TimeSpan.FromSeconds(10)));
            reader.Complete();
        });

    [Fact]
    public Task A_publisher_that_waits_for_our_acknowledgements_is_read_as_its_bytes_arrive() =>
        Task.Run(async () =>
        {
            // Nagle's algorithm on, as FFmpeg's own RTMP client has it: a write smaller than a segment waits
            // until what was sent before is acknowledged, and an unread piece below the mark is not, for
            // as long as a delayed acknowledgement takes (40 ms at least on Linux).
            using var pair = await LoopbackPair.OpenAsync(new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = false });
            var (publisher, ingest) = (pair.Client, pair.Server);
            ingest.Blocking = false;
            ingest.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReceiveLowWater, 4096); // a 3 Mb/s stream's merged-read mark
            var reader = new SocketThreadReader(ingest) { WaitLimit = TimeSpan.FromMilliseconds(20) };

            // Messages as FFmpeg writes them: a chunk's header, then its body in a write of its own. The
            // first ones are acknowledged at once (a connection starts in quick-ack mode); then each header
            // waits alone below the mark, and its body behind it in the publisher's kernel.
            var messages = 0;
            while (!reader.PromptReads && messages < 200)
            {
                publisher.Send(new byte[8]);
                publisher.Send(new byte[400]);
                await ReadExactlyAsync(reader, 408);
                messages++;
            }

            Assert.True(reader.PromptReads, "a header left alone below the mark, again and again, did not make the reader read promptly");

            // From now on any byte wakes the reader: the header is read, and so acknowledged, as it comes.
            publisher.Send(new byte[8]);
            publisher.Send(new byte[400]);
            await ReadExactlyAsync(reader, 408);
            Assert.Equal(1, (int)ingest.GetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReceiveLowWater)!);
            reader.Complete();
        });

    [Fact]
    public Task A_publisher_that_stalled_in_a_lossy_moment_goes_back_to_merged_reads_once_it_sends_whole_messages() =>
        Task.Run(async () =>
        {
            _ingest.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReceiveLowWater, 4096);
            var reader = new SocketThreadReader(_ingest) { WaitLimit = TimeSpan.FromMilliseconds(20), Pacer = new MergedPacer(4096) };

            // Three tails of a message left alone below the mark (what packet loss does to a publisher
            // that sends whole messages): indistinguishable from a publisher that waits for us, so far.
            for (var i = 0; i < 3; i++)
            {
                await SendAndReadAsync(_publisher, reader, 8);
            }

            Assert.True(reader.PromptReads);
            await SendAndReadAsync(_publisher, reader, 408);
            Assert.Equal(1, (int)_ingest.GetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReceiveLowWater)!);

            // Then whole messages, read after read: no piece in 256 reads ends prompt reads, and the next
            // wait puts the pacer's own mark back.
            var messages = 0;
            while (reader.PromptReads && messages < 400)
            {
                await SendAndReadAsync(_publisher, reader, 408);
                messages++;
            }

            Assert.False(reader.PromptReads, "whole messages, hundreds of reads, kept the reader reading promptly");
            Assert.Equal(1, reader.PromptReadsEnded);
            Assert.InRange(messages, 250, 258); // a window of 256 reads from the switch on
            await SendAndReadAsync(_publisher, reader, 408);
            Assert.Equal(4096, (int)_ingest.GetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReceiveLowWater)!);
            reader.Complete();
        });

    [Fact]
    public Task A_publisher_read_promptly_that_sent_a_header_alone_is_given_the_CPU_once_before_the_reader_waits() =>
        Task.Run(async () =>
        {
            var reader = new SocketThreadReader(_ingest);
            reader.ReadPromptly();

            // Whole messages, read after read: nothing to give way for, and prompt reads for the
            // pacer's reason (bursts it cannot predict) are for good, unlike those for stalls.
            for (var i = 0; i < 300; i++)
            {
                await SendAndReadAsync(_publisher, reader, 408);
            }

            Assert.Equal(0, reader.PartialYields);
            Assert.True(reader.PromptReads);
            Assert.Equal(0, reader.PromptReadsEnded);

            // A chunk's header alone, its body not written yet (a publisher on this machine that our
            // wake-up took the CPU from): the reader yields once, finds nothing, and waits for the body.
            _publisher.Send(new byte[8]);
            var header = await reader.ReadAsync(CancellationToken.None).AsTask().WaitAsync(TimeSpan.FromSeconds(5));
            Assert.Equal(8, header.Buffer.Length);
            Assert.Equal(1, reader.PartialYields);
            reader.AdvanceTo(header.Buffer.Start, header.Buffer.End);

            _publisher.Send(new byte[400]);
            await ReadExactlyAsync(reader, 408);
            Assert.Equal(1, reader.PartialYields);
            reader.Complete();
        });

    [Fact]
    public Task A_publisher_that_sends_whole_messages_keeps_merged_reads() =>
        Task.Run(async () =>
        {
            _ingest.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReceiveLowWater, 4096);
            var reader = new SocketThreadReader(_ingest) { WaitLimit = TimeSpan.FromMilliseconds(20) };

            // The same small messages, each in one write with TCP_NODELAY (as our agent and OBS send): they
            // wait below the mark and are taken whole when the wait ends, which says nothing of the publisher.
            for (var i = 0; i < 10; i++)
            {
                await SendAndReadAsync(_publisher, reader, 408);
            }

            Assert.False(reader.PromptReads);
            Assert.Equal(4096, (int)_ingest.GetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReceiveLowWater)!);
            reader.Complete();
        });

    /// <summary>The publisher sends <paramref name="count"/> bytes in one write; the reader reads and consumes them.</summary>
    private static async Task SendAndReadAsync(Socket publisher, SocketThreadReader reader, int count)
    {
        publisher.Send(new byte[count]);
        await ReadExactlyAsync(reader, count);
    }

    /// <summary>Reads until <paramref name="count"/> bytes are there, and consumes them.</summary>
    private static async Task ReadExactlyAsync(SocketThreadReader reader, int count)
    {
        while (true)
        {
            var result = await reader.ReadAsync(CancellationToken.None).AsTask().WaitAsync(TimeSpan.FromSeconds(5));
            if (result.Buffer.Length >= count)
            {
                reader.AdvanceTo(result.Buffer.GetPosition(count));
                return;
            }

            reader.AdvanceTo(result.Buffer.Start, result.Buffer.End);
        }
    }

    /// <summary>Merged reads at <paramref name="mark"/>, never bounded: what the session's pacer does without a budget.</summary>
    private sealed class MergedPacer(int mark) : IReadPacer
    {
        public int Mark => mark;

        public int AudioMark => 1;

        public double BeforeWait(double now, out WaitMark planned)
        {
            planned = WaitMark.Merged;
            return double.PositiveInfinity;
        }
    }

    /// <summary>
    /// Answers each wait with the next mark of its script: holds end <see cref="HoldMilliseconds"/> after
    /// they start, audio waits 10 s after, merged waits never.
    /// </summary>
    private sealed class ScriptedPacer(WaitMark[] script) : IReadPacer
    {
        private int _next;

        public int HoldMilliseconds { get; init; } = 30;

        public int AudioMarkBytes { get; init; } = 1;

        public int MarkBytes { get; init; } = 1;

        public int Mark => MarkBytes;

        public int AudioMark => AudioMarkBytes;

        public double BeforeWait(double now, out WaitMark mark)
        {
            mark = script[Math.Min(_next++, script.Length - 1)];
            return mark switch
            {
                WaitMark.Hold => now + HoldMilliseconds,
                WaitMark.Audio => now + 10_000,
                _ => double.PositiveInfinity,
            };
        }
    }

    [Fact]
    public async Task The_peer_closing_ends_the_stream()
    {
        var reader = new SocketThreadReader(_ingest);
        await _publisher.SendAsync("bye"u8.ToArray());
        _publisher.Shutdown(SocketShutdown.Send);

        var result = await reader.ReadAsync(CancellationToken.None).AsTask().WaitAsync(TimeSpan.FromSeconds(5));
        while (!result.IsCompleted)
        {
            reader.AdvanceTo(result.Buffer.Start, result.Buffer.End);
            result = await reader.ReadAsync(CancellationToken.None).AsTask().WaitAsync(TimeSpan.FromSeconds(5));
        }

        Assert.Equal("bye", Text(result.Buffer));
        reader.Complete();
    }

    [Fact]
    public async Task Canceling_a_waiting_read_wakes_it_at_once_and_completing_ends_the_thread()
    {
        var reader = new SocketThreadReader(_ingest);
        using var cts = new CancellationTokenSource();
        var read = reader.ReadAsync(cts.Token).AsTask();
        await Task.Delay(200);
        Assert.False(read.IsCompleted);

        var watch = Stopwatch.StartNew();
        await cts.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => read.WaitAsync(TimeSpan.FromSeconds(5)));
        Assert.True(watch.Elapsed < TimeSpan.FromSeconds(4), $"the canceled read took {watch.Elapsed}");

        var thread = reader.ReceiveThread!;
        var ended = await Task.Run(() => // not on the receive thread, where the canceled read may have left us
        {
            reader.Complete();
            return thread.Join(TimeSpan.FromSeconds(5));
        });
        Assert.True(ended, "the receive thread did not end after Complete");
    }

    private async Task SendLaterAsync(string text)
    {
        await Task.Delay(100);
        await _publisher.SendAsync(Encoding.ASCII.GetBytes(text));
    }

    private static string Text(ReadOnlySequence<byte> buffer) => Encoding.ASCII.GetString(buffer.ToArray());
}
