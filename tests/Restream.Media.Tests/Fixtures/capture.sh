#!/usr/bin/env bash
# Captures the RTMP byte fixtures in this folder from real peers: ffmpeg publishing to nginx-rtmp,
# ffmpeg playing from nginx-rtmp, and ffmpeg publishing with timestamps past 2^24 ms (extended
# timestamps). socat sits between them and dumps each direction raw (-r: client→server, -R: server→client).
# Needs: ffmpeg nginx libnginx-mod-rtmp socat. Run from this folder: bash capture.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; [ -f "$work/nginx.pid" ] && kill "$(cat "$work/nginx.pid")" 2>/dev/null || true; rm -rf "$work"' EXIT
cat > "$work/nginx.conf" <<CONF
load_module /usr/lib/nginx/modules/ngx_rtmp_module.so;
$( [ "$(id -u)" = 0 ] && echo "user root;" )
worker_processes 1;
pid $work/nginx.pid;
error_log $work/error.log info;
events { worker_connections 64; }
rtmp { server { listen 127.0.0.1:19401; chunk_size 4096; application live { live on; } } }
CONF
nginx -p "$work" -c "$work/nginx.conf" -e "$work/stderr.log"
sleep 0.5
src=(-f lavfi -i testsrc2=size=320x240:rate=15 -f lavfi -i sine=frequency=440:sample_rate=44100)
enc=(-c:v libx264 -preset ultrafast -g 15 -b:v 150k -c:a aac -b:a 32k -f flv)

# 1 and 2: a publish session, and a play session of it, through socat.
socat -r "$here/ffmpeg-publish.c2s.bin" -R "$here/nginx-publish.s2c.bin" TCP-LISTEN:19402,reuseaddr TCP:127.0.0.1:19401 &
socat -r "$work/play.c2s.bin" -R "$here/nginx-play.s2c.bin" TCP-LISTEN:19403,reuseaddr TCP:127.0.0.1:19401 &
sleep 0.3
ffmpeg -nostdin -hide_banner -loglevel error -re "${src[@]}" -t 3 "${enc[@]}" rtmp://127.0.0.1:19402/live/fixture &
pub=$!
sleep 1
timeout 5 ffmpeg -y -nostdin -hide_banner -loglevel error -i rtmp://127.0.0.1:19403/live/fixture -t 1 -c copy -f flv /dev/null || true
wait $pub

# 3: timestamps past 0xFFFFFF ms, so every header carries an extended timestamp.
socat -r "$here/ffmpeg-extended-ts.c2s.bin" -R "$work/ext.s2c.bin" TCP-LISTEN:19404,reuseaddr TCP:127.0.0.1:19401 &
sleep 0.3
ffmpeg -nostdin -hide_banner -loglevel error "${src[@]}" -t 1 -output_ts_offset 16800 "${enc[@]}" rtmp://127.0.0.1:19404/live/ext
sleep 0.3
ls -l "$here"/*.bin
