#!/usr/bin/env bash
# Runs every Restream test on a Debian/Ubuntu machine: installs the real peers the tests drive
# (ffmpeg, nginx with the RTMP module, stunnel, openssl, socat, PostgreSQL, SRT tools, and a headless
# desktop for the agent: Xvfb, xclock, PulseAudio) when they are missing, then runs
# the whole .NET test suite. Safe to run again; the tests start and stop their own servers on
# free loopback ports.
set -euo pipefail

# The agent tests stop the agent the way a streamer does, with Ctrl+C (SIGINT). A job started in the
# background (`bash scripts/test.sh &`, some CI runners) inherits SIGINT ignored, every process it
# starts inherits that too, and bash cannot undo it: start again with the default disposition.
if [ -z "${RESTREAM_TEST_SIGNALS_RESET:-}" ] && [ -r /proc/$$/status ] \
  && (( 0x$(awk '/^SigIgn:/{print $2}' /proc/$$/status) & 2 )); then
  if env --default-signal=INT true 2>/dev/null; then
    export RESTREAM_TEST_SIGNALS_RESET=1
    exec env --default-signal=INT,QUIT bash "$0" "$@"
  fi
  echo "warning: SIGINT is ignored in this shell (started in the background?) and this env cannot reset it;" \
    "the agent tests, which stop the agent with Ctrl+C, will fail. Run the tests in the foreground." >&2
fi

cd "$(dirname "$0")/.."

packages=(ffmpeg nginx libnginx-mod-rtmp stunnel4 openssl socat postgresql prometheus libsrt1.5-openssl srt-tools
  redis-server xvfb x11-apps x11-utils x11-xserver-utils libx11-6 libxrandr2 pulseaudio pulseaudio-utils fonts-dejavu-core util-linux)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "== installing: ${missing[*]}"
  sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v dotnet >/dev/null 2>&1; then
  echo "dotnet (the .NET 10 SDK) is required: see README.md, 'Requirements'" >&2
  exit 1
fi

echo "== building"
dotnet build Restream.slnx -c Release -nologo -v quiet

echo "== publishing the agent as single files for Linux and Windows (the Windows build is checked by compiling it)"
publish_dir=$(mktemp -d)
for rid in linux-x64 win-x64; do
  dotnet publish src/Restream.Agent/Restream.Agent.csproj -c Release -r "$rid" -nologo -v quiet -o "$publish_dir/$rid"
done
ls -l "$publish_dir"/linux-x64/restream-agent "$publish_dir"/win-x64/restream-agent.exe | awk '{print "   " $5 " bytes  " $9}'
"$publish_dir"/linux-x64/restream-agent --help >/dev/null
rm -rf "$publish_dir"

echo "== testing"
log=$(mktemp)
set +e
dotnet test Restream.slnx -c Release --no-build -nologo -v quiet --logger "console;verbosity=minimal" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
# One closing line for every project together.
passed=$(grep -oE 'Passed: +[0-9]+' "$log" | awk '{s+=$2} END {print s+0}')
failed=$(grep -oE 'Failed: +[0-9]+' "$log" | awk '{s+=$2} END {print s+0}')
skipped=$(grep -oE 'Skipped: +[0-9]+' "$log" | awk '{s+=$2} END {print s+0}')
rm -f "$log"
echo "${passed} passed, ${failed} failed, ${skipped} skipped"
if [ "$status" -eq 0 ] && [ "$passed" -eq 0 ]; then
  echo "no test ran" >&2
  exit 1
fi
exit "$status"
