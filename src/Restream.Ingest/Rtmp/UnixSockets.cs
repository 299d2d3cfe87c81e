using System.Net.Sockets;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Versioning;

namespace Restream.Ingest.Rtmp;

/// <summary>
/// A gathering, non-blocking <c>sendmsg</c> straight to libc for buffers that are already pinned
/// (every chunked frame lives on the pinned object heap, see <see cref="Media.PinnedArrayPool"/>).
/// .NET's <see cref="Socket.Send(IList{ArraySegment{byte}}, SocketFlags, out SocketError)"/> pins each
/// buffer with a GCHandle and builds its vectors on every call; at one write per frame and
/// destination that was a third of the time a write spent outside the kernel.
/// </summary>
[SupportedOSPlatform("linux")]
internal static unsafe partial class UnixSockets
{
    /// <summary>Most buffers in one call (Linux's UIO_MAXIOV is 1024; a batch is far smaller).</summary>
    public const int MaxVectors = 64;

    private const int MsgDontWait = 0x40;
    private const int MsgNoSignal = 0x4000;
    private const int EAgain = 11;
    private const int EIntr = 4;

    [StructLayout(LayoutKind.Sequential)]
    public struct IoVector
    {
        public byte* Base;
        public nuint Length;
    }

    [StructLayout(LayoutKind.Sequential)]
    private struct MessageHeader
    {
        public void* Name;
        public uint NameLength;
        public IoVector* Vectors;
        public nuint VectorCount;
        public void* Control;
        public nuint ControlLength;
        public int Flags;
    }

    [LibraryImport("libc", EntryPoint = "sendmsg", SetLastError = true)]
    private static partial nint SendMessage(int fd, MessageHeader* message, int flags);

    [LibraryImport("libc", EntryPoint = "recv", SetLastError = true)]
    private static partial nint ReceiveBytes(int fd, byte* buffer, nuint length, int flags);

    [LibraryImport("libc", EntryPoint = "setsockopt", SetLastError = true)]
    private static partial int SetOption(int fd, int level, int name, int* value, uint length);

    private const int SolSocket = 1;
    private const int SoReceiveLowWater = 18;

    // No SetLastError: a failed poll (a signal) counts as readable and the receive that follows says
    // what is wrong, so errno is never read; capturing it cost two calls into the runtime a wake-up.
    [LibraryImport("libc", EntryPoint = "poll")]
    private static partial int PollDescriptors(PollDescriptor* descriptors, nuint count, int timeoutMilliseconds);

    [StructLayout(LayoutKind.Sequential)]
    private struct PollDescriptor
    {
        public int Fd;
        public short Events;
        public short ReturnedEvents;
    }

    private const short PollIn = 0x1;
    private const short PollReadHangUp = 0x2000;

    /// <summary>The address of a pinned array's bytes at <paramref name="offset"/>.</summary>
    public static byte* AddressOf(byte[] pinned, int offset) =>
        (byte*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(pinned)) + offset;

    /// <summary>
    /// Sends what the socket takes now without waiting: the bytes sent (0 when it would block).
    /// Throws <see cref="IOException"/> when the connection is gone.
    /// </summary>
    public static int Send(SafeSocketHandle socket, IoVector* vectors, int count)
    {
        using var lease = new HandleLease(socket);
        var header = new MessageHeader { Vectors = vectors, VectorCount = (nuint)count };
        while (true)
        {
            WakeProfile.Call(WakeProfile.Phase.Send);
            var sent = SendMessage(lease.Fd, &header, MsgDontWait | MsgNoSignal);
            WakeProfile.Return();
            if (sent >= 0)
            {
                return (int)sent;
            }

            if (Retry(Marshal.GetLastPInvokeError()) is false)
            {
                return 0; // would block
            }
        }
    }

    /// <summary>
    /// Waits until the socket is readable (its receive low-water mark is met, it has an error, or the
    /// peer closed), at most <paramref name="timeoutMilliseconds"/> (-1: no limit). False when the
    /// wait timed out. A signal that interrupts the wait counts as readable: the receive that
    /// follows finds out. The same <c>poll(2)</c> as <see cref="Socket.Poll(int, SelectMode)"/>, without
    /// the layers around it (a receive thread calls this once per wake-up).
    /// </summary>
    public static bool WaitReadable(SafeSocketHandle socket, int timeoutMilliseconds) => PollOne(socket, PollIn, timeoutMilliseconds);

    /// <summary>
    /// Sleeps through a pacer's hold: at most <paramref name="timeoutMilliseconds"/>, waking early only
    /// when the connection ends (the peer's FIN, our own shutdown of reading when the read is cancelled)
    /// or fails, never for data. The same <c>poll(2)</c> with <c>POLLRDHUP</c> in place of <c>POLLIN</c>: data
    /// waits in the kernel whatever the receive low-water mark, so a hold needs no mark of its own and
    /// costs no <c>setsockopt</c> before and after it. False when the hold ran its time.
    /// </summary>
    public static bool Hold(SafeSocketHandle socket, int timeoutMilliseconds) => PollOne(socket, PollReadHangUp, timeoutMilliseconds);

    /// <summary>One <c>poll(2)</c> of one socket for <paramref name="events"/>: false when it timed out.</summary>
    private static bool PollOne(SafeSocketHandle socket, short events, int timeoutMilliseconds)
    {
        using var lease = new HandleLease(socket);
        var descriptor = new PollDescriptor { Fd = lease.Fd, Events = events };
        WakeProfile.Call(WakeProfile.Phase.Poll);
        var ready = PollDescriptors(&descriptor, 1, timeoutMilliseconds) != 0;
        WakeProfile.Return();
        return ready;
    }

    /// <summary>
    /// One non-blocking <c>recv</c>: the bytes read (0 at the end of the stream), or -1 when nothing
    /// is there yet. Throws <see cref="IOException"/> when the connection is broken.
    /// </summary>
    public static int Receive(SafeSocketHandle socket, Span<byte> buffer)
    {
        using var lease = new HandleLease(socket);
        fixed (byte* bytes = buffer)
        {
            while (true)
            {
                WakeProfile.Call(WakeProfile.Phase.Receive);
                var received = ReceiveBytes(lease.Fd, bytes, (nuint)buffer.Length, MsgDontWait);
                WakeProfile.Return();
                if (received >= 0)
                {
                    return (int)received;
                }

                if (Retry(Marshal.GetLastPInvokeError()) is false)
                {
                    return -1; // nothing there yet
                }
            }
        }
    }

    /// <summary>
    /// Sets the socket's receive low-water mark (<c>SO_RCVLOWAT</c>): a wait for data ends once this
    /// many bytes are there. Straight to libc, as a paced reader changes it around many waits.
    /// Throws <see cref="SocketException"/> when the socket refuses it.
    /// </summary>
    public static void SetReceiveLowWater(SafeSocketHandle socket, int bytes)
    {
        using var lease = new HandleLease(socket);
        WakeProfile.Call(WakeProfile.Phase.SetOption);
        var failed = SetOption(lease.Fd, SolSocket, SoReceiveLowWater, &bytes, sizeof(int)) != 0;
        WakeProfile.Return();
        if (failed)
        {
            throw new SocketException(Marshal.GetLastPInvokeError());
        }
    }

    /// <summary>After a failed call: true to try again (a signal interrupted it), false when it would block; throws otherwise.</summary>
    private static bool Retry(int errno) => errno switch
    {
        EIntr => true,
        EAgain => false,
        _ => throw new IOException($"the connection is closed ({Marshal.GetPInvokeErrorMessage(errno)})"),
    };

    /// <summary>
    /// The socket's descriptor, held for one call: a close on another thread cannot recycle the fd
    /// under us (the close waits for the release).
    /// </summary>
    private readonly ref struct HandleLease
    {
        private readonly SafeHandle _handle;
        private readonly bool _added;

        public HandleLease(SafeSocketHandle socket)
        {
            _handle = socket;
            _handle.DangerousAddRef(ref _added);
            Fd = (int)_handle.DangerousGetHandle();
        }

        public int Fd { get; }

        public void Dispose()
        {
            if (_added)
            {
                _handle.DangerousRelease();
            }
        }
    }
}
