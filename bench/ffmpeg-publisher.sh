#!/usr/bin/env bash
# Relays a real `ffmpeg -re` publisher (FFmpeg's own RTMP client: Nagle's algorithm on, each chunk's
# header written apart from its body) to one destination, with our server and with nginx-rtmp, and
# prints for each: the relay's CPU (all its threads and processes, from /proc schedstat) and how long
# the publisher's segments waited for the relay's acknowledgement (tcpdump on loopback: a segment
# the relay leaves unread is not acknowledged, and Nagle's algorithm holds the publisher's next bytes
# behind it). The bench's own publisher (Restream.Bench relay) sends whole messages with TCP_NODELAY,
# as OBS and our agent do; this one is the other common kind.
#
# usage: bench/ffmpeg-publisher.sh [SECONDS=30] [ROUNDS=2]
#   RESTREAM_BENCH_BASELINE=/path/to/restream.dll adds an earlier build as "baseline" and "baseline-budget".
#   RESTREAM_BENCH_PUBLISHER_ARGS="-tcp_nodelay 1" passes options to the publisher's RTMP output.
# needs: dotnet build -c Release; ffmpeg, nginx + libnginx-mod-rtmp; tcpdump (optional, for the waits; root).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-30}
rounds=${2:-2}
warmup=5
server=src/Restream.Server/bin/Release/net10.0/restream.dll
input=bench/results/input-720p30-3M.flv
work=$(mktemp -d /tmp/restream-ffpub.XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
[ -f "$server" ] || { echo "build first: dotnet build -c Release" >&2; exit 1; }
[ -f "$input" ] || { echo "run the relay bench once first (it encodes $input)" >&2; exit 1; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
cpu_ns() { for p in "$@" $(pgrep -P "$1" || true); do cat /proc/"$p"/task/*/schedstat 2>/dev/null; done | awk '{s+=$1} END {print s+0}'; }

start_relay() { # variant ingest sink -> pid
  local variant=$1 ingest=$2 sink=$3 dll=$server extra=()
  case $variant in
    nginx-rtmp)
      mkdir -p "$work/nginx"
      cat > "$work/nginx/nginx.conf" <<EOF
load_module /usr/lib/nginx/modules/ngx_rtmp_module.so;
$([ "$(id -u)" = 0 ] && echo "user root;")
worker_processes 1;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log info;
events { worker_connections 1024; }
rtmp { server { listen 127.0.0.1:$ingest; chunk_size 4096; application live { live on; push rtmp://127.0.0.1:$sink/sink/d0; } } }
EOF
      nginx -p "$work/nginx" -c "$work/nginx/nginx.conf" -e "$work/nginx/stderr.log" -g "daemon off;" > "$work/relay.log" 2>&1 &
      echo $!; return ;;
    baseline*) dll=$RESTREAM_BENCH_BASELINE ;;
  esac
  [[ $variant == *budget ]] && extra+=(--Restream:Rtmp:LatencyBudget=00:00:00.015)
  rm -rf "$work/data"
  DOTNET_ReadyToRun=0 dotnet "$dll" --Restream:Rtmp:Port="$ingest" --Restream:Rtmp:Address=127.0.0.1 --urls=http://127.0.0.1:0 \
    --Restream:Database="Data Source=$work/data/restream.db" --Restream:DataProtectionKeys="$work/data/keys" \
    --Restream:Channels:0:Name=bench --Restream:Channels:0:StreamKey=benchkey-123456 --Logging:LogLevel:Default=Information \
    --Restream:Channels:0:Destinations:0:Url="rtmp://127.0.0.1:$sink/sink" --Restream:Channels:0:Destinations:0:Key=d0 \
    "${extra[@]}" > "$work/relay.log" 2>&1 &
  echo $!
}

run() { # variant -> "cpu_ms_per_s p50 p99 max"
  local variant=$1 ingest sink relay sinkpid pub dump=""
  ingest=$(free_port); sink=$(free_port)
  ffmpeg -hide_banner -loglevel error -listen 1 -i "rtmp://127.0.0.1:$sink/sink/d0" -f null - > /dev/null 2>&1 &
  sinkpid=$!
  relay=$(start_relay "$variant" "$ingest" "$sink")
  for _ in $(seq 200); do (echo > /dev/tcp/127.0.0.1/"$ingest") 2>/dev/null && break; sleep 0.2; done
  if command -v tcpdump > /dev/null && [ "$(id -u)" = 0 ]; then
    tcpdump -i lo -n -s 60 -w "$work/cap.pcap" "tcp port $ingest" > /dev/null 2>&1 &
    dump=$!
  fi
  sleep 0.5
  local key=benchkey-123456
  [ "$variant" = nginx-rtmp ] && key=live
  # shellcheck disable=SC2086 # the publisher's options are words
  timeout $((seconds + warmup + 2)) ffmpeg -hide_banner -loglevel error -re -stream_loop -1 -i "$input" -c copy -f flv \
    ${RESTREAM_BENCH_PUBLISHER_ARGS:-} "rtmp://127.0.0.1:$ingest/live/$key" > /dev/null 2>&1 &
  pub=$!
  sleep "$warmup"
  local c1 c2
  c1=$(cpu_ns "$relay"); sleep "$seconds"; c2=$(cpu_ns "$relay")
  kill "$pub" 2>/dev/null || true; wait "$pub" 2>/dev/null || true
  [ -n "$dump" ] && { sleep 0.5; kill "$dump"; wait "$dump" 2>/dev/null || true; }
  if grep -q "holds back its data" "$work/relay.log"; then echo "  ($variant read the publisher as its bytes arrive)" >&2; fi
  kill "$relay" "$sinkpid" 2>/dev/null || true; wait "$relay" "$sinkpid" 2>/dev/null || true
  local waits="- - -"
  if [ -n "$dump" ]; then
    waits=$(tcpdump -n -tt -r "$work/cap.pcap" 2>/dev/null | awk -v port="$ingest" '
      $5 == "127.0.0.1." port ":" && match($0, /seq [0-9]+:[0-9]+/) { split(substr($0, RSTART + 4, RLENGTH - 4), r, ":"); sent[r[2]] = $1; next }
      $3 == "127.0.0.1." port && match($0, /ack [0-9]+/) { a = substr($0, RSTART + 4, RLENGTH - 4); if (a in sent) { print ($1 - sent[a]) * 1000; delete sent[a] } }
    ' | sort -n | awk '{v[NR]=$1} END {if (!NR) {print "- - -"; exit} p99 = int(NR*0.99)+1; if (p99 > NR) p99 = NR; printf "%.2f %.2f %.2f", v[int(NR/2)+1], v[p99], v[NR]}')
  fi
  echo "$(awk -v a="$c1" -v b="$c2" -v s="$seconds" 'BEGIN {printf "%.2f", (b-a)/1e6/s}') $waits"
}

variants=(restream restream-budget nginx-rtmp)
[ -n "${RESTREAM_BENCH_BASELINE:-}" ] && variants+=(baseline baseline-budget)
# RESTREAM_BENCH_ONLY=restream,nginx-rtmp runs only those (nginx-rtmp is needed for the ratio column).
[ -n "${RESTREAM_BENCH_ONLY:-}" ] && IFS=, read -r -a variants <<< "$RESTREAM_BENCH_ONLY"
declare -A results
for round in $(seq "$rounds"); do
  for v in "${variants[@]}"; do
    echo "round $round: $v" >&2
    results[$v]+="$(run "$v")"$'\n'
  done
done

echo
echo "ffmpeg -re ${RESTREAM_BENCH_PUBLISHER_ARGS:-}publisher (720p30 ~3 Mb/s + AAC), 1 destination, $seconds s per run, $rounds round(s), $(nproc) cores, $(date -u '+%Y-%m-%d %H:%M UTC')"
echo
echo "| relay | CPU ms/s (median) [runs] | / nginx-rtmp | publisher's wait for our ACK p50 / p99 / max ms |"
echo "|---|---|---|---|"
median() { sort -n | awk '{v[NR]=$1} END {print (NR % 2) ? v[(NR+1)/2] : (v[NR/2] + v[NR/2+1]) / 2}'; }
nginx=$(printf '%s' "${results[nginx-rtmp]:-}" | awk 'NF {print $1}' | median)
for v in "${variants[@]}"; do
  cpu=$(printf '%s' "${results[$v]}" | awk 'NF {print $1}' | median)
  runs=$(printf '%s' "${results[$v]}" | awk 'NF {printf "%s%s", sep, $1; sep=", "}')
  last=$(printf '%s' "${results[$v]}" | awk 'NF {l=$2 " / " $3 " / " $4} END {print l}')
  echo "| $v | $cpu [$runs] | $(awk -v a="$cpu" -v b="${nginx:-0}" 'BEGIN {if (b > 0) printf "%.2f×", a/b; else printf "-"}') | $last |"
done
