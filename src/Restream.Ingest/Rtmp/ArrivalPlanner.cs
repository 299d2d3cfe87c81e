namespace Restream.Ingest.Rtmp;

/// <summary>
/// Merged reads under a latency budget: decides, each time a publisher's receive thread is about to
/// wait, whether the frames it has read go out now, and how long the wait may last. A live encoder
/// sends at the pace of its own timestamps, so when the next audio and video frames will arrive is
/// known to within a few milliseconds. With that:
/// <list type="bullet">
/// <item>an audio frame due shortly before a video frame waits for it in the kernel (below the
/// socket's low-water mark, see <see cref="MergedRead"/>) and both are read and relayed together: the
/// video's bytes wake the reader whenever they come, within the audio's budget;</item>
/// <item>a video frame due just before an audio frame is left in the kernel (the reader raises the
/// low-water mark) until the audio has most likely come (as late after its earliest time as audio read
/// by its own bytes has lately come), and both are read and relayed together;</item>
/// <item>an audio frame that can pair with neither within the budget goes out alone, read when it
/// arrives: the low-water mark drops to about the smallest recent audio frame, so its own bytes wake the
/// reader (a wake-up by data costs this kind of machine less than half of one by a timer);</item>
/// <item>a video frame read with audio due (or late) within the budget waits, read, for that audio's
/// bytes the same way, and an audio frame read with video due (or late) within the budget for the video's.</item>
/// </list>
/// No frame waits longer than the budget for another one: each write carries at most one audio
/// frame, and about as few writes go out as that allows (AAC frames come every 21 ms, video every
/// 33 ms at 30 fps: one write per audio frame, 47 a second, instead of one per frame, 77; ~47 on a real
/// socket from a publisher whose frames come 2–9 ms after their time, ~49 wake-ups).
/// Times are milliseconds on one monotonic clock (<see cref="Now"/> in the server, any clock in
/// tests); the planner does no I/O.
/// </summary>
public sealed class ArrivalPlanner(TimeSpan budget)
{
    /// <summary>The clock the reader and the session give the planner: <see cref="System.Diagnostics.Stopwatch"/> time in milliseconds.</summary>
    public static double Now => System.Diagnostics.Stopwatch.GetElapsedTime(0).TotalMilliseconds;

    /// <summary>How long after a frame is due we look for it: arrivals jitter by a millisecond or two.</summary>
    public const double Slack = 2;

    private readonly double _budget = budget.TotalMilliseconds;
    private double _offset = double.NaN; // arrival minus timestamp, for frames read as they arrived
    private RecentMinimum _videoOffset;
    private RecentMinimum _audioOffset;
    private Track _audio;
    private Track _video;
    private double _heldSince = double.PositiveInfinity; // arrival of the earliest frame read but not sent
    private bool _heldAudio;
    private bool _heldVideo;
    private WaitMark _lastMark;
    private double _audioLate; // how long after its earliest time audio read by its own bytes came, on average
    private double _audioLateSpread; // and how far from that average, on average
    private RecentMinimum _audioBytes = RecentMinimum.Empty; // the smallest audio payload of late

    /// <summary>
    /// The low-water mark for <see cref="WaitMark.Audio"/>: half the smallest audio payload of the last one to two
    /// seconds, so the body of the next audio message wakes the reader even when its chunk header came apart from it.
    /// </summary>
    public int AudioMark => double.IsPositiveInfinity(_audioBytes.Value) ? 1 : Math.Max(1, (int)_audioBytes.Value / 2);

    /// <summary>The last plan found neither audio nor video coming (a pause, a stalled network): its wait only looks now and then.</summary>
    public bool PublisherPaused { get; private set; }

    /// <summary>Notes a media frame the reader has just taken (not sequence headers or metadata) and its payload size.</summary>
    public void OnFrame(bool audio, uint timestamp, double now, int bytes = 1)
    {
        if (audio)
        {
            _audioBytes.Add(bytes, now);
        }

        var sample = now - timestamp;
        if (double.IsNaN(_offset) || Math.Abs(sample - _offset) > 1000)
        {
            // The first frame, or the timestamps jumped (a new encoder session): start over.
            _offset = sample;
            _videoOffset = new RecentMinimum(sample, now);
            _audioOffset = new RecentMinimum(sample, now);
        }
        else if (!audio)
        {
            // Video tells when frames arrive: it is above the low-water mark and wakes us as it comes.
            // The earliest arrival over the last one to two seconds is the truest, and follows clocks that drift.
            _offset = _videoOffset.Add(sample, now);
        }
        else
        {
            // Audio is read when we choose, so most of it says only that it came before; what is read as
            // it arrives (by its own bytes) tells how much earlier than the video's pace it can come, and
            // how much later it usually comes.
            _audioOffset.Add(sample, now);
            if (_lastMark == WaitMark.Audio)
            {
                var late = Math.Clamp(sample - _offset, 0, _budget);
                _audioLateSpread += (Math.Abs(late - _audioLate) - _audioLateSpread) / 8;
                _audioLate += (late - _audioLate) / 8;
            }
        }

        ref var track = ref audio ? ref _audio : ref _video;
        if (track.Seen)
        {
            var step = (double)(uint)(timestamp - track.Last);
            if (step is > 0 and < 500)
            {
                track.Step = step;
            }
        }

        track.Last = timestamp;
        track.Seen = true;
        _heldSince = Math.Min(_heldSince, Math.Min(now, (audio ? EarliestAudioOffset : _offset) + timestamp));
        _heldAudio |= audio;
        _heldVideo |= !audio;
    }

    /// <summary>
    /// The reader is about to wait at <paramref name="now"/>: whether what it has read goes out now
    /// (<c>Send</c>), the latest the wait may end (<c>WakeBy</c>; infinity for no bound), and what wakes it
    /// meanwhile (<c>Mark</c>): the merged-read low-water mark; a raised one, so the next video frame stays
    /// in the kernel and it and the audio due just after it are read with one wake-up; or any byte, for
    /// a frame that is late.
    /// </summary>
    public (bool Send, double WakeBy, WaitMark Mark) Plan(double now)
    {
        PublisherPaused = false;
        var plan = PlanWait(now);
        _lastMark = plan.Mark;
        return plan;
    }

    private (bool Send, double WakeBy, WaitMark Mark) PlanWait(double now)
    {
        if (_audio.Step <= 0 || _video.Step <= 0)
        {
            Sent();
            return (true, double.PositiveInfinity, WaitMark.Merged); // audio or video alone, or not enough seen yet: nothing to pair
        }

        var nextAudio = _offset + _audio.Last + _audio.Step;
        var nextVideo = _offset + _video.Last + _video.Step;
        var audioFlows = nextAudio + _budget > now; // a kind whose next frame is more than a budget late has stopped
        var videoFlows = nextVideo + _budget > now;
        if (audioFlows && videoFlows && !double.IsPositiveInfinity(_heldSince) && now < _heldSince + _budget)
        {
            if (!_heldAudio && nextAudio < nextVideo && nextAudio + Slack - _heldSince <= _budget)
            {
                return (false, _heldSince + _budget, WaitMark.Audio); // hold the video read for the audio due in a moment (or late): its bytes wake us
            }

            if (_heldAudio && !_heldVideo && nextVideo < nextAudio && nextVideo + Slack - _heldSince <= _budget)
            {
                return (false, _heldSince + _budget, WaitMark.Merged); // hold the audio read for the video due in a moment (or late): its bytes wake us
            }
        }

        Sent();
        if (!audioFlows && !videoFlows)
        {
            // The publisher paused: look now and then (what comes first may sit below the low-water mark).
            PublisherPaused = true;
            return (true, now + 4 * _budget, WaitMark.Merged);
        }

        // A hold ends when the audio has most likely come: as late after its earliest time as audio came of late.
        var holdEnd = nextAudio + Math.Max(Slack, _audioLate + 2 * _audioLateSpread);
        if (audioFlows && videoFlows && nextVideo <= nextAudio && nextVideo >= now && holdEnd - nextVideo <= _budget)
        {
            return (true, holdEnd, WaitMark.Hold); // video, then audio soon after: read both at once
        }

        var audioWaitsForVideo = nextVideo - nextAudio + Slack <= _budget;
        var due = !videoFlows || (audioFlows && nextAudio < nextVideo && !audioWaitsForVideo) ? nextAudio : nextVideo;

        if (due + Slack <= now)
        {
            // Looked for and not there: the publisher is late (jitter, a busy encoder, a muxer that
            // writes a chunk's header and body apart). Any byte wakes us, so the frame is read the
            // moment it comes instead of by a timer every few milliseconds that mostly finds nothing.
            // The wait ends when this kind of frame counts as stopped; the next plan handles that.
            return (true, due + _budget, WaitMark.AnyByte);
        }

        if (audioFlows && due == nextAudio)
        {
            // Audio that pairs with no video: its own bytes wake the reader as it arrives; the bound is for audio that stops.
            return (true, due + _budget, WaitMark.Audio);
        }

        // Waiting for a video frame: its bytes wake us whenever it comes. Audio that arrives meanwhile waits
        // below the mark, for it or for the bound: it arrives no earlier than it is due, so it waits at most the budget.
        var audioArrives = EarliestAudioOffset + _audio.Last + _audio.Step; // the earliest the next audio frame comes
        return (true, audioFlows && due == nextVideo ? Math.Max(due + Slack, audioArrives + _budget) : due + Slack, WaitMark.Merged);
    }

    /// <summary>How early audio comes against its timestamp: the video's pace, or earlier when audio read on arrival showed it.</summary>
    private double EarliestAudioOffset => Math.Min(_offset, _audioOffset.Value);

    private void Sent()
    {
        _heldSince = double.PositiveInfinity;
        _heldAudio = false;
        _heldVideo = false;
    }

    /// <summary>The least of a sample (an arrival minus its timestamp, an audio payload's size) over the last one to two seconds.</summary>
    private struct RecentMinimum(double sample, double now)
    {
        /// <summary>Nothing seen yet: the value is infinity until the first sample.</summary>
        public static RecentMinimum Empty => new(double.PositiveInfinity, double.NegativeInfinity);

        private double _windowMin = sample;
        private double _previousMin = double.PositiveInfinity;
        private double _windowStart = now;

        public readonly double Value => Math.Min(_windowMin, _previousMin);

        public double Add(double sample, double now)
        {
            if (now - _windowStart >= 1000)
            {
                (_previousMin, _windowMin, _windowStart) = (_windowMin, sample, now);
            }

            _windowMin = Math.Min(_windowMin, sample);
            return Value;
        }
    }

    private struct Track
    {
        public bool Seen;
        public uint Last;
        public double Step;
    }
}

/// <summary>What wakes a publisher's reader during its next wait (the socket's receive low-water mark).</summary>
public enum WaitMark
{
    /// <summary>The merged-read mark (<see cref="MergedRead"/>): a video frame wakes the reader, audio waits below it.</summary>
    Merged,

    /// <summary>Raised out of reach: what arrives stays in the kernel until the wait's end.</summary>
    Hold,

    /// <summary>Lowered to one byte: anything that arrives wakes the reader at once.</summary>
    AnyByte,

    /// <summary>Lowered to about an audio frame (<see cref="ArrivalPlanner.AudioMark"/>): the audio due next wakes the reader as it arrives.</summary>
    Audio,
}
