using System.Buffers;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using Restream.Ingest.Rtmp;
using Restream.Media.Rtmp;

namespace Restream.Bench;

/// <summary>
/// bench/floor-relay.c in C#: the same forwarder (poll honouring SO_RCVLOWAT, one non-blocking recv,
/// one send, no protocol work), run by the .NET runtime with the server's settings. Beside the C
/// floor it shows what the runtime alone adds to a wake-up, apart from any code of ours.
/// <para>
/// With <c>rtmp</c> as its last argument it also does the RTMP work a relay cannot skip, with the
/// server's own parser and chunk writer and nothing else: past the handshake (passed through) it
/// reads the publisher's chunks into whole messages (<see cref="ChunkStreamReader"/>, pooled bodies as
/// in the server), writes each message out again in chunks of its own (<see cref="ChunkStreamWriter"/>:
/// a type 0 header, then type 3), and sends what one read brought to every sink with one <c>send</c>
/// each. No hub, queue, GOP cache, planner, async code or counters: the least our RTMP code can cost
/// per wake-up, beside the bare forwarder's system calls.
/// </para>
/// <para>
/// With <c>rtmp-budget</c> (and a budget in milliseconds, 15 by default) the RTMP work is paced the way
/// the server paces it under a latency budget: the server's own <see cref="ArrivalPlanner"/> notes
/// each media message, decides before each wait whether what was read goes out now, bounds the wait
/// and picks the socket's low-water mark for it (held, an audio frame's, any byte, or the merged mark),
/// as <c>SocketThreadReader</c> does. The same writes as the server's budget, without the rest of the
/// server: what a relay path as short as this one would cost.
/// </para>
/// usage: restream-bench floor-relay LISTEN_PORT SINK_PORT LOWAT_BYTES WAIT_MS [SINKS] [bytes|rtmp|rtmp-budget [BUDGET_MS]]
/// </summary>
internal static unsafe partial class FloorRelay
{
    private const int MsgDontWait = 0x40;
    private const int MsgNoSignal = 0x4000;
    private const short PollIn = 0x1;
    private const short PollOut = 0x4;
    private const short PollReadHangUp = 0x2000;
    private const short PollErrors = 0x8 | 0x10; // POLLERR | POLLHUP

    [StructLayout(LayoutKind.Sequential)]
    private struct PollDescriptor
    {
        public int Fd;
        public short Events;
        public short ReturnedEvents;
    }

    // No SetLastError, as in the server's UnixSockets: a failed poll (a signal) goes on to the receive.
    [LibraryImport("libc", EntryPoint = "poll")]
    private static partial int Poll(PollDescriptor* descriptors, nuint count, int timeoutMilliseconds);

    [LibraryImport("libc", EntryPoint = "recv", SetLastError = true)]
    private static partial nint Receive(int fd, byte* buffer, nuint length, int flags);

    [LibraryImport("libc", EntryPoint = "send", SetLastError = true)]
    private static partial nint Send(int fd, byte* buffer, nuint length, int flags);

    public static int Run(string[] args)
    {
        if (args.Length is < 4 or > 7 || (args.Length >= 6 && args[5] is not ("bytes" or "rtmp" or "rtmp-budget"))
            || (args.Length == 7 && args[5] != "rtmp-budget"))
        {
            Console.Error.WriteLine("usage: restream-bench floor-relay LISTEN_PORT SINK_PORT LOWAT_BYTES WAIT_MS [SINKS] [bytes|rtmp|rtmp-budget [BUDGET_MS]]");
            return 2;
        }

        var listenPort = int.Parse(args[0], CultureInfo.InvariantCulture);
        var sinkPort = int.Parse(args[1], CultureInfo.InvariantCulture);
        var lowat = int.Parse(args[2], CultureInfo.InvariantCulture);
        var waitMs = int.Parse(args[3], CultureInfo.InvariantCulture);
        var sinkCount = args.Length > 4 ? int.Parse(args[4], CultureInfo.InvariantCulture) : 1;
        var rtmp = args.Length > 5 && args[5] is "rtmp" or "rtmp-budget";
        var budget = args.Length > 5 && args[5] == "rtmp-budget"
            ? TimeSpan.FromMilliseconds(args.Length > 6 ? int.Parse(args[6], CultureInfo.InvariantCulture) : 15)
            : TimeSpan.Zero;
        if (sinkCount is < 1 or > 64)
        {
            Console.Error.WriteLine("SINKS must be 1 to 64");
            return 2;
        }

        using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReuseAddress, true);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, listenPort));
        listener.Listen(16);
        while (true)
        {
            var publisher = listener.Accept();
            var thread = new Thread(() =>
            {
                var sinks = new Socket[sinkCount];
                using (publisher)
                {
                    try
                    {
                        var fds = new int[sinkCount];
                        for (var i = 0; i < sinkCount; i++)
                        {
                            sinks[i] = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
                            sinks[i].Connect(new IPEndPoint(IPAddress.Loopback, sinkPort));
                            sinks[i].NoDelay = true;
                            fds[i] = (int)sinks[i].SafeHandle.DangerousGetHandle();
                        }

                        publisher.NoDelay = true;
                        if (budget > TimeSpan.Zero)
                        {
                            ForwardPaced((int)publisher.SafeHandle.DangerousGetHandle(), fds, publisher, lowat, waitMs, new ArrivalPlanner(budget));
                        }
                        else
                        {
                            Forward((int)publisher.SafeHandle.DangerousGetHandle(), fds, publisher, lowat, waitMs, rtmp);
                        }
                    }
                    catch (SocketException)
                    {
                    }
                    catch (RtmpProtocolException e)
                    {
                        Console.Error.WriteLine($"floor-relay: {e.Message}");
                    }
                    finally
                    {
                        foreach (var sink in sinks)
                        {
                            sink?.Dispose();
                        }
                    }
                }
            }) { IsBackground = true };
            thread.Start();
        }
    }

    private static void Forward(int publisher, int[] sinks, Socket publisherSocket, int lowat, int waitMs, bool rtmp)
    {
        WakeProfile.Begin(); // RESTREAM_WAKE_PROFILE=FILE: CPU time per system call, as in the server
        var buffer = GC.AllocateArray<byte>(256 * 1024, pinned: true);
        var rechunker = rtmp ? new Rechunker() : null;
        fixed (byte* bytes = buffer)
        {
            long forwarded = 0;
            var marked = false;
            var fds = stackalloc PollDescriptor[1 + sinks.Length];
            while (true)
            {
                var got = WaitAndReceive(fds, publisher, sinks, marked ? waitMs : -1, bytes, buffer.Length);
                if (got < 0)
                {
                    return;
                }

                if (got > 0)
                {
                    var data = bytes;
                    var length = got;
                    if (rechunker is not null)
                    {
                        (var rechunked, length) = rechunker.Take(new ReadOnlySpan<byte>(bytes, (int)got));
                        data = (byte*)rechunked;
                    }

                    for (var i = 0; i < sinks.Length; i++)
                    {
                        if (!SendAll(sinks[i], data, length))
                        {
                            return;
                        }
                    }

                    forwarded += got;
                    if (!marked && forwarded > 64 * 1024 && lowat > 1)
                    {
                        publisherSocket.SetRawSocketOption(1 /* SOL_SOCKET */, 18 /* SO_RCVLOWAT */, BitConverter.GetBytes(lowat));
                        marked = true;
                    }
                }

                if (!PassAnswers(fds, sinks, publisher, bytes, buffer.Length))
                {
                    return;
                }
            }
        }
    }

    /// <summary>
    /// <see cref="Forward"/> with the RTMP work, paced by <paramref name="planner"/> the way the server's
    /// receive thread paces it (<c>SocketThreadReader.Fill</c> with the session's planned reads).
    /// </summary>
    /// <summary>RESTREAM_FLOOR_TRACE=FILE: every wait of the paced floor and every frame it reads, for studying the planner.</summary>
    private static readonly StreamWriter? TraceTo = Environment.GetEnvironmentVariable("RESTREAM_FLOOR_TRACE") is { Length: > 0 } trace
        ? new StreamWriter(trace) { AutoFlush = true }
        : null;

    private static void ForwardPaced(int publisher, int[] sinks, Socket publisherSocket, int lowat, int waitMs, ArrivalPlanner planner)
    {
        WakeProfile.Begin();
        var buffer = GC.AllocateArray<byte>(256 * 1024, pinned: true);
        var rechunker = new Rechunker(planner);
        fixed (byte* bytes = buffer)
        {
            long forwarded = 0;
            var mergedMark = 1; // the merged mark once past the handshake and the stream's start, as MergedRead sets it
            var socketMark = 1;
            var fds = stackalloc PollDescriptor[1 + sinks.Length];
            while (true)
            {
                var now = ArrivalPlanner.Now;
                var (send, wakeBy, planned) = planner.Plan(now);
                if (send && !rechunker.Flush(sinks))
                {
                    return;
                }

                var hasBound = !double.IsPositiveInfinity(wakeBy);
                var timeout = mergedMark > 1 ? (double)waitMs : -1;
                if (hasBound)
                {
                    timeout = timeout < 0 ? wakeBy - now : Math.Min(timeout, wakeBy - now);
                }

                // A hold ignores the publisher's data without a mark of its own, as the server's does (POLLRDHUP).
                var hold = planned == WaitMark.Hold && hasBound;
                var mark = planned switch
                {
                    _ when hold => socketMark,
                    WaitMark.AnyByte => 1,
                    WaitMark.Audio when hasBound && planner.AudioMark < mergedMark => planner.AudioMark,
                    _ => mergedMark,
                };
                if (mark != socketMark)
                {
                    WakeProfile.Switch(WakeProfile.Phase.SetOption);
                    publisherSocket.SetRawSocketOption(1 /* SOL_SOCKET */, 18 /* SO_RCVLOWAT */, BitConverter.GetBytes(mark));
                    WakeProfile.Switch(WakeProfile.Phase.Ours);
                    socketMark = mark;
                }

                var milliseconds = timeout < 0 ? -1 : (int)Math.Min(int.MaxValue / 1000, Math.Max(1, Math.Ceiling(timeout)));
                var got = WaitAndReceive(fds, publisher, sinks, milliseconds, bytes, buffer.Length, hold ? PollReadHangUp : PollIn);
                if (got < 0)
                {
                    return;
                }

                TraceTo?.WriteLine($"W {now:0.000} {(send ? 1 : 0)} {planned} {mark} {milliseconds} {ArrivalPlanner.Now:0.000} {got}");
                if (got > 0)
                {
                    rechunker.Add(new ReadOnlySpan<byte>(bytes, (int)got));
                    forwarded += got;
                    if (mergedMark == 1 && forwarded > 64 * 1024 && lowat > 1)
                    {
                        mergedMark = lowat;
                    }
                }

                if (!PassAnswers(fds, sinks, publisher, bytes, buffer.Length))
                {
                    return;
                }
            }
        }
    }

    /// <summary>
    /// The publisher's bytes in, the same messages chunked anew out: the handshake passes through,
    /// then every message is read whole and written with a type 0 header and type 3 continuations at
    /// the chunk size the publisher announced (a Set Chunk Size goes out in the old size, then applies).
    /// </summary>
    private sealed class Rechunker(ArrivalPlanner? planner = null)
    {
        private const int Handshake = 1 + 1536 + 1536; // C0 C1 C2: passed through as they are
        private readonly ChunkStreamReader _chunks = new();
        private int _held; // bytes of _out that Add wrote and Flush has not sent yet
        private readonly byte[] _pending = GC.AllocateArray<byte>(1024 * 1024, pinned: true);
        private readonly byte[] _out = GC.AllocateArray<byte>(1024 * 1024, pinned: true);
        private int _pendingLength;
        private int _handshakeLeft = Handshake;
        private int _outChunkSize = 128;

        /// <summary>Rechunks these bytes of the publisher's after what is held; the planner notes each media message.</summary>
        public void Add(ReadOnlySpan<byte> received)
        {
            _held = Rechunk(received, _held);
        }

        /// <summary>Sends what is held to every sink: false when a sink is gone.</summary>
        public bool Flush(int[] sinks)
        {
            if (_held == 0)
            {
                return true;
            }

            fixed (byte* output = _out)
            {
                for (var i = 0; i < sinks.Length; i++)
                {
                    if (!SendAll(sinks[i], output, _held))
                    {
                        return false;
                    }
                }
            }

            _held = 0;
            return true;
        }

        /// <summary>What to send for these bytes of the publisher's (a pinned buffer, valid until the next call).</summary>
        public (nint Data, nint Length) Take(ReadOnlySpan<byte> received)
        {
            var written = Rechunk(received, 0);
            fixed (byte* output = _out)
            {
                return ((nint)output, written); // pinned: the address stays valid
            }
        }

        /// <summary>Writes the messages these bytes complete into <c>_out</c> from <paramref name="written"/> on: where they end.</summary>
        private int Rechunk(ReadOnlySpan<byte> received, int written)
        {
            if (_handshakeLeft > 0)
            {
                var raw = Math.Min(_handshakeLeft, received.Length);
                received[..raw].CopyTo(_out);
                written = raw;
                _handshakeLeft -= raw;
                received = received[raw..];
            }

            if (_pendingLength + received.Length > _pending.Length)
            {
                throw new RtmpProtocolException("more than 1 MiB of an unfinished message");
            }

            received.CopyTo(_pending.AsSpan(_pendingLength));
            _pendingLength += received.Length;
            var sequence = new ReadOnlySequence<byte>(_pending, 0, _pendingLength);
            var reader = new SequenceReader<byte>(sequence);
            while (_chunks.TryReadMessage(ref reader, out var message))
            {
                using (message)
                {
                    var length = ChunkStreamWriter.GetChunkedLength(message.ChunkStreamId, message.Timestamp, message.Length, _outChunkSize);
                    if (written + length > _out.Length)
                    {
                        throw new RtmpProtocolException("one read brought more than 1 MiB of messages");
                    }

                    written += ChunkStreamWriter.WriteMessage(_out.AsSpan(written), _outChunkSize, message.ChunkStreamId, message.TypeId,
                        message.Timestamp, message.StreamId, message.Span);
                    if (planner is not null && message.TypeId is RtmpMessageType.Audio or RtmpMessageType.Video && message.Length > 0
                        && !IsSequenceHeader(message))
                    {
                        planner.OnFrame(message.TypeId == RtmpMessageType.Audio, message.Timestamp, ArrivalPlanner.Now, message.Length);
                        TraceTo?.WriteLine($"F {ArrivalPlanner.Now:0.000} {(message.TypeId == RtmpMessageType.Audio ? 'a' : 'v')} {message.Timestamp} {message.Length}");
                    }
                    if (message.TypeId == RtmpMessageType.SetChunkSize)
                    {
                        var size = ProtocolControl.ReadUInt32Body(message.Span);
                        _chunks.SetChunkSize(size);
                        _outChunkSize = (int)size;
                    }
                }
            }

            var consumed = (int)reader.Consumed;
            _pending.AsSpan(consumed, _pendingLength - consumed).CopyTo(_pending);
            _pendingLength -= consumed;
            return written;
        }

        private static bool IsSequenceHeader(RtmpMessage message) =>
            message.TypeId == RtmpMessageType.Video
                ? Restream.Media.Flv.FlvMedia.IsVideoSequenceHeader(message.Span)
                : Restream.Media.Flv.FlvMedia.IsAudioSequenceHeader(message.Span);
    }

    /// <summary>
    /// Waits (one <c>poll</c>) for the publisher's bytes or a sink's answer, at most
    /// <paramref name="timeoutMilliseconds"/> (-1: no limit), then takes what the publisher sent with one
    /// non-blocking <c>recv</c>: the bytes read (0: none yet), or -1 when the publisher is gone.
    /// </summary>
    private static nint WaitAndReceive(PollDescriptor* fds, int publisher, int[] sinks, int timeoutMilliseconds, byte* bytes, int length,
        short publisherEvents = PollIn)
    {
        fds[0] = new PollDescriptor { Fd = publisher, Events = publisherEvents };
        for (var i = 0; i < sinks.Length; i++)
        {
            fds[1 + i] = new PollDescriptor { Fd = sinks[i], Events = PollIn };
        }

        WakeProfile.Switch(WakeProfile.Phase.Poll);
        var ready = Poll(fds, (nuint)(1 + sinks.Length), timeoutMilliseconds);
        WakeProfile.Switch(WakeProfile.Phase.Ours);
        if (ready > 0 && (fds[0].ReturnedEvents & (PollIn | PollReadHangUp | PollErrors)) == 0)
        {
            return 0; // a sink's answer woke us
        }

        WakeProfile.Switch(WakeProfile.Phase.Receive);
        var got = Receive(publisher, bytes, (nuint)length, MsgDontWait);
        WakeProfile.Switch(WakeProfile.Phase.Ours);
        if (got == 0 || (got < 0 && Marshal.GetLastPInvokeError() is not (11 or 4)))
        {
            return -1;
        }

        return Math.Max(got, 0);
    }

    /// <summary>
    /// Reads what the sinks the poll found readable said: the first sink's answers go to the publisher,
    /// the others' are dropped. False when a connection is gone.
    /// </summary>
    private static bool PassAnswers(PollDescriptor* fds, int[] sinks, int publisher, byte* bytes, int length)
    {
        for (var i = 0; i < sinks.Length; i++)
        {
            if ((fds[1 + i].ReturnedEvents & (PollIn | PollErrors)) == 0)
            {
                continue;
            }

            var got = Receive(sinks[i], bytes, (nuint)length, MsgDontWait);
            if (got == 0 || (got < 0 && Marshal.GetLastPInvokeError() is not (11 or 4)))
            {
                return false;
            }

            if (got > 0 && i == 0 && !SendAll(publisher, bytes, got))
            {
                return false;
            }
        }

        return true;
    }

    private static bool SendAll(int fd, byte* data, nint length)
    {
        while (length > 0)
        {
            WakeProfile.Switch(WakeProfile.Phase.Send);
            var sent = Send(fd, data, (nuint)length, MsgNoSignal);
            WakeProfile.Switch(WakeProfile.Phase.Ours);
            if (sent < 0)
            {
                var error = Marshal.GetLastPInvokeError();
                if (error == 4)
                {
                    continue;
                }

                if (error == 11)
                {
                    var descriptor = new PollDescriptor { Fd = fd, Events = PollOut };
                    Poll(&descriptor, 1, -1);
                    continue;
                }

                return false;
            }

            data += sent;
            length -= sent;
        }

        return true;
    }
}
