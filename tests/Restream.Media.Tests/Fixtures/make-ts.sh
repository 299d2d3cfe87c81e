#!/usr/bin/env bash
# Makes the MPEG-TS fixtures with Debian's ffmpeg: 2 s of 320x240 15 fps H.264 (keyframe every
# second) and 48 kHz AAC; the second one starts 1.5 s before the 33-bit PTS wrap (2^33 / 90 kHz).
set -euo pipefail
cd "$(dirname "$0")"
src=(-f lavfi -i testsrc2=size=320x240:rate=15 -f lavfi -i sine=frequency=440:sample_rate=48000 -t 2)
enc=(-c:v libx264 -preset ultrafast -g 15 -b:v 100k -c:a aac -b:a 32k -f mpegts)
ffmpeg -nostdin -hide_banner -loglevel error -y "${src[@]}" "${enc[@]}" h264-aac.ts
ffmpeg -nostdin -hide_banner -loglevel error -y "${src[@]}" -output_ts_offset 95442.2 "${enc[@]}" h264-aac-wrap.ts
ls -l ./*.ts
