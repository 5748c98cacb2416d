#!/usr/bin/env bash
# Make sure a Docker daemon answers; start Debian's dockerd when none does (CI machine).
set -euo pipefail
if docker info >/dev/null 2>&1; then exit 0; fi
if ! command -v dockerd >/dev/null 2>&1; then
  echo "ensure_dockerd: no Docker daemon answers and dockerd is not installed (run scripts/bootstrap.sh test as root)" >&2
  exit 1
fi
log=${DOCKERD_LOG:-/var/log/jobstack-dockerd.log}
echo "ensure_dockerd: starting dockerd (log: $log)"
# dockerd outlives this script: it must not inherit our open descriptors (a caller's flock lock
# file, a pipe a test reads until EOF), or it holds them for as long as it runs.
(
  for fd in /proc/$BASHPID/fd/*; do
    fd=${fd##*/}
    [ "$fd" -gt 2 ] && eval "exec $fd>&-"
  done
  exec nohup dockerd --storage-driver=overlay2 --iptables=false >"$log" 2>&1 </dev/null
) &
for _ in $(seq 1 60); do
  if docker info >/dev/null 2>&1; then exit 0; fi
  sleep 1
done
echo "ensure_dockerd: dockerd did not answer within 60 s; see $log" >&2
exit 1
