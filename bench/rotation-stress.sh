#!/usr/bin/env bash
# Runs the copytruncate rotations under a writer's burst N times in a row (default 500):
# TestRotationDuringBurst/copytruncate rotates 5 times during 200,000 lines, and
# TestRealLogrotate/copytruncate lets logrotate itself do it. A line delivered twice, or
# one on disk never delivered, fails the run, and the script stops there. About 1.5 s a
# run on two cores.
set -euo pipefail
cd "$(dirname "$0")/../watcher"
n=${1:-500}
bin=$(mktemp)
trap 'rm -f "$bin"' EXIT
go test -c -o "$bin" .
for i in $(seq 1 "$n"); do
  if ! out=$("$bin" -test.run 'TestRotationDuringBurst/copytruncate|TestRealLogrotate/copytruncate' -test.count 1 2>&1); then
    echo "$out" | tail -40
    echo "run $i of $n FAILED"
    exit 1
  fi
  if (( i % 50 == 0 )); then echo "$i runs passed"; fi
done
echo "all $n runs passed"
