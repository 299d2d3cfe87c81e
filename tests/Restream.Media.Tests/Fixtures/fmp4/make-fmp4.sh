#!/usr/bin/env bash
# Writes the low-latency fMP4 fixtures: what the transcoder's ffmpeg (dash muxer, streaming, 0.5 s
# fragments) writes for one 160x90 30 fps rendition and its audio: init segments and 2 s segments of
# four fragments each. Run from this folder; Debian 12's ffmpeg 5.1.
set -euo pipefail
tmp=$(mktemp -d)
ffmpeg -hide_banner -loglevel error -f lavfi -i testsrc2=size=160x90:rate=30 -f lavfi -i sine=frequency=440:sample_rate=48000 -t 4 \
  -map 0:v -c:v libx264 -preset ultrafast -g 60 -keyint_min 60 -sc_threshold 0 -pix_fmt yuv420p -b:v 100k \
  -map 1:a -c:a aac -b:a 32k \
  -f dash -seg_duration 2 -use_template 1 -use_timeline 1 -streaming 1 -frag_type duration -frag_duration 0.5 \
  -hls_playlist 1 -adaptation_sets "id=0,streams=v id=1,streams=a" \
  -init_seg_name 'init-$RepresentationID$.m4s' -media_seg_name 'chunk-$RepresentationID$-$Number%05d$.m4s' "$tmp/manifest.mpd"
cp "$tmp"/init-0.m4s "$tmp"/chunk-0-00001.m4s "$tmp"/init-1.m4s "$tmp"/chunk-1-00001.m4s "$tmp"/media_0.m3u8 .
rm -rf "$tmp"
