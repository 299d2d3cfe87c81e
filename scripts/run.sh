#!/usr/bin/env bash
# Runs the Restream server with every role in one process (RTMP ingest on 1935, HTTP on 8080).
# Extra arguments go to the server, e.g.:
#   bash scripts/run.sh --config restream.json
#   bash scripts/run.sh --Restream:Channels:0:Name=main --Restream:Channels:0:StreamKey=change-me-please
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v dotnet >/dev/null 2>&1; then
  sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
  echo "== the .NET 10 SDK is missing; trying the distribution's package (dotnet-sdk-10.0)"
  if ! ($sudo apt-get update -qq && $sudo apt-get install -y -qq dotnet-sdk-10.0); then
    cat >&2 <<'MSG'
Could not install dotnet-sdk-10.0 from your package sources. Install the .NET 10 SDK, then run this again:
  Ubuntu 24.04+:  sudo add-apt-repository ppa:dotnet/backports && sudo apt-get install dotnet-sdk-10.0
  Debian 12:      add Microsoft's package repository (packages.microsoft.com, "debian/12/prod"),
                  then: sudo apt-get install dotnet-sdk-10.0
MSG
    exit 1
  fi
fi
# DOTNET_ReadyToRun=0: the server's code and the framework's are all compiled by the JIT at start-up
# (optimized, tiering is off), not taken precompiled: 6-12 % less CPU per relayed stream, ~3 s longer
# start (bench/README.md). Set DOTNET_ReadyToRun=1 to start faster.
exec dotnet run --project src/Restream.Server -c Release -e "DOTNET_ReadyToRun=${DOTNET_ReadyToRun:-0}" -- "$@"
