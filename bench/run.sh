#!/usr/bin/env bash
# Runs logban's benchmark table against its peers, on the same generated files in the
# same run, and prints it. Ratios are what count: absolute times on shared machines are
# noise. Needs python3, bc, grep, and fail2ban (apt-get install fail2ban python3-pyinotify:
# fail2ban-regex for the filter rows, fail2ban-server for the latency row), and for the
# journal's row systemd-journal-remote and python3-systemd. The latency,
# ban-burst, kernel and restore rows need root; the others run without it.
#
#   bench/run.sh                 # 1M-line zimbra.log, 500k-line mailbox.log; about 6 minutes
#   LINES=200000 bench/run.sh    # smaller, quicker
set -euo pipefail
cd "$(dirname "$0")/.."

for tool in python3 bc grep fail2ban-regex fail2ban-server go; do
  command -v "$tool" >/dev/null || { echo "bench/run.sh needs $tool (apt-get install fail2ban python3-pyinotify bc)" >&2; exit 2; }
done

LINES=${LINES:-1000000}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
GENLOGS=$(realpath "${GENLOGS:-../shared/tools/genlogs.py}")
export LOGBAN_GENLOGS=$GENLOGS LOGBAN_BENCH_LINES=$LINES

echo "generating $LINES lines of zimbra.log (and half as many of mailbox.log)..." >&2
python3 "$GENLOGS" "$WORK/data" --lines "$LINES" >/dev/null
go build -o "$WORK/bin/" ./cmd/ban-client ./cmd/ban-server

now() { date +%s.%N; }
secs() { echo "$2 - $1" | bc -l; }

# One row per filter: the regex all three tools run (fail2ban strips the timestamp
# before matching, so it carries none), the file, and logban's built-in filter.
rows=(
  "zimbra-submission|zimbra.log|postfix/submission/smtpd\[\d+\]: warning: [-._\w]+\[<HOST>\](?::\d+)?: SASL [-\w]+ authentication failed"
  "zimbra-mailbox-auth|mailbox.log|\[(?:(?:name|aname|mid|ip|port)=[^;\]]*;)*oip=<HOST>;[^\]]*\] security - cmd=Auth; .*error=authentication failed for \["
  "zimbra-dosfilter|mailbox.log|DOS ALERT: Request rejected ip=<HOST>,"
)

# grep -E speaks POSIX ERE: no (?:, \d or \w; in a bracket a literal ] comes first and
# a backslash is itself; <HOST> becomes a character class.
ere() {
  sed -e 's/(?:/(/g' -e 's/\\d/[0-9]/g' -e 's/\\w\]/[:alnum:]_]/g' -e 's/\\w/[[:alnum:]_]/g' \
      -e 's/\[^;\\\]\]/[^];]/g' -e 's/\[^\\\]\]/[^]]/g' -e 's/<HOST>/[0-9a-fA-F:.]+/g' <<<"$1"
}
# timed runs a command five times, its output into $WORK/out.txt (a file: grep -c
# stops at its first match when writing to /dev/null), and prints the median seconds.
timed() {
  local k a b times=()
  for k in 1 2 3 4 5; do
    a=$(now); "$@" >"$WORK/out.txt" || true; b=$(now)
    times+=("$(secs "$a" "$b")")
  done
  printf '%s\n' "${times[@]}" | sort -g | sed -n 3p
}
matched() { sed -n 's/^Lines: [0-9]* lines, \([0-9]*\) matched.*/\1/p' "$1"; }

printf '\n## Filter throughput (%s lines of zimbra.log, %s of mailbox.log)\n\n' "$LINES" "$((LINES / 2))"
printf '| filter | lines | matched | logban filter | logban, same regex | grep -cE | fail2ban-regex | vs fail2ban: filter | same regex | vs grep: same regex |\n'
printf '|---|---|---|---|---|---|---|---|---|---|\n'
for row in "${rows[@]}"; do
  IFS='|' read -r filter file regex <<<"$row"
  f="$WORK/data/$file"
  lines=$(wc -l <"$f")

  # Each tool prints its summary only, as fail2ban-regex does by default; the quick
  # ones run five times each, and their median counts.
  lb=$(timed "$WORK/bin/ban-client" test-filter "$filter" "$f"); builtin=$(matched "$WORK/out.txt")
  lbs=$(timed "$WORK/bin/ban-client" test-filter "$regex" "$f"); same=$(matched "$WORK/out.txt")
  gr=$(timed grep -cE "$(ere "$regex")" "$f"); grepped=$(cat "$WORK/out.txt")
  t3=$(now)
  f2b=$(fail2ban-regex "$f" "$regex" 2>/dev/null | sed -n 's/^Lines: .* \([0-9]*\) matched.*/\1/p'); t4=$(now)
  fb=$(secs "$t3" "$t4")
  if [[ "$builtin" != "$same" || "$same" != "$grepped" || "$same" != "$f2b" ]]; then
    echo "MISMATCH $filter: logban $builtin, same regex $same, grep $grepped, fail2ban $f2b" >&2
  fi
  printf '| %s | %s | %s | %.2f s (%.1fM/s) | %.2f s | %.2f s | %.1f s (%.0fk/s) | %.0fx | %.0fx | %.2fx |\n' \
    "$filter" "$lines" "$same" "$lb" "$(echo "$lines / $lb / 1000000" | bc -l)" "$lbs" "$gr" "$fb" "$(echo "$lines / $fb / 1000" | bc -l)" \
    "$(echo "$fb / $lb" | bc -l)" "$(echo "$fb / $lbs" | bc -l)" "$(echo "$gr / $lbs" | bc -l)"
done

# The journal: zimbra.log's lines as the entries journald would have made of them
# (Postfix's in postfix@-.service), written into journal files by systemd-journal-remote,
# read by logban's journal backend (journalctl --output=export, package journal) and by
# fail2ban's (python-systemd), and by journalctl alone, the floor.
REMOTE=$(ls /usr/lib/systemd/systemd-journal-remote /lib/systemd/systemd-journal-remote 2>/dev/null | head -1 || true)
if [[ -n "$REMOTE" ]] && /usr/bin/python3 -c 'import systemd.journal' 2>/dev/null; then  # fail2ban's python
  echo "writing zimbra.log's lines into a journal..." >&2
  mkdir -p "$WORK/journal"
  python3 - "$WORK/data/zimbra.log" <<'PY' | "$REMOTE" --output="$WORK/journal/remote.journal" - 2>/dev/null
import re, sys, time
year = time.localtime().tm_year
head = re.compile(r'^(\w{3} +\d+ \d\d:\d\d:\d\d) (\S+) ([^\[:]+)(?:\[(\d+)\])?: (.*)$')
out = sys.stdout
for mono, line in enumerate(open(sys.argv[1], encoding='utf-8', errors='replace'), 1):
    m = head.match(line.rstrip('\n'))
    if not m:
        continue
    stamp, host, ident, pid, msg = m.groups()
    t = int(time.mktime(time.strptime(f"{year} {stamp}", "%Y %b %d %H:%M:%S")) * 1_000_000)
    unit = 'postfix@-.service' if ident.startswith('postfix') else 'zimbra.service'
    out.write(f"__REALTIME_TIMESTAMP={t}\n__MONOTONIC_TIMESTAMP={mono}\n_BOOT_ID=5e1f2a3b4c5d6e7f8091a2b3c4d5e6f7\n"
              f"_HOSTNAME={host}\nSYSLOG_IDENTIFIER={ident}\n_PID={pid or 1}\n_SYSTEMD_UNIT={unit}\nMESSAGE={msg}\n\n")
PY
  match=_SYSTEMD_UNIT=postfix@-.service
  regex=${rows[0]##*|}
  entries=$(journalctl -D "$WORK/journal" -q -o export "$match" | grep -c '^__CURSOR=' || true)
  t0=$(now); journalctl -D "$WORK/journal" -q -o export "$match" >/dev/null; t1=$(now)
  "$WORK/bin/ban-client" test-filter -journal -journal-directory "$WORK/journal" zimbra-submission "$match" >"$WORK/jbuiltin.txt"; t2=$(now)
  jgrep=$(journalctl -D "$WORK/journal" -q -o short-iso "$match" | grep -cE "$(ere "$regex")" || true); t3=$(now)
  jf2b=$(fail2ban-regex --journalmatch="$match" "systemd-journal[journalpath=$WORK/journal]" "$regex" 2>/dev/null | sed -n 's/^Lines: .* \([0-9]*\) matched.*/\1/p'); t4=$(now)
  jlb=$(matched "$WORK/jbuiltin.txt")
  if [[ "$jlb" != "$jgrep" || "$jlb" != "$jf2b" ]]; then
    echo "MISMATCH journal: logban $jlb, journalctl | grep $jgrep, fail2ban $jf2b" >&2
  fi
  printf '\n## The journal (zimbra.log as journal entries; Postfix'"'"'s: %s)\n\n' "$entries"
  printf '| filter | entries | matched | journalctl alone | logban | journalctl \\| grep -cE | fail2ban-regex (systemd) | vs fail2ban |\n|---|---|---|---|---|---|---|---|\n'
  printf '| zimbra-submission | %s | %s | %.2f s | %.2f s (%.0fk/s) | %.2f s | %.1f s (%.0fk/s) | %.1fx |\n' \
    "$entries" "$jlb" "$(secs "$t0" "$t1")" "$(secs "$t1" "$t2")" "$(echo "$entries / $(secs "$t1" "$t2") / 1000" | bc -l)" \
    "$(secs "$t2" "$t3")" "$(secs "$t3" "$t4")" "$(echo "$entries / $(secs "$t3" "$t4") / 1000" | bc -l)" "$(echo "$(secs "$t3" "$t4") / $(secs "$t1" "$t2")" | bc -l)"
else
  printf '\n(the journal row needs systemd-journal-remote and python3-systemd)\n'
fi

# gobench runs Go benchmarks and prints their result lines; a failure is printed, and
# the table goes on.
gobench() {
  local out
  if ! out=$(go test -run '^$' "$@" 2>&1); then
    echo "FAILED: go test $*"
    grep -E -- '--- FAIL|_test.go:' <<<"$out" || true
  fi
  grep -E '^Benchmark' <<<"$out" || true
}

printf '\n## Servers (bench/*_test.go)\n\n```\n'
gobench -bench ServerThroughput -benchtime 5x ./bench
gobench -bench ServerMemory -benchtime 1x ./bench
gobench -bench PolicyService -benchtime 100000x ./bench # postfwd's rows need apt-get install postfwd
if [[ $(id -u) == 0 ]]; then
  gobench -bench DetectionLatency -benchtime 1000x ./bench
  gobench -bench BanBurst -benchtime 3x ./bench
  gobench -bench WriterBurst -benchtime 5x ./bench
  gobench -bench FarmLatency -benchtime 1000x ./bench
  gobench -bench FarmBurst -benchtime 2x ./bench
  gobench -bench FarmPartition -benchtime 20x ./bench
else
  echo "(latency, ban burst and farm need root: network namespaces)"
fi
printf '```\n'

printf '\n## Go benchmarks\n\n```\n'
gobench -bench 'FilterNoMatch|FilterMatch|FilterActiveSync' -benchmem ./filters
gobench -bench FollowAppended -benchtime 3x ./watcher
gobench -bench EntriesToBatches -benchmem ./journal
gobench -bench 'BanBurst|TrackedAddressMemory|TrackedNetworkMemory|TrackedAccountMemory|TrackedDeviceMemory' -benchtime 2x ./jails
gobench -bench 'BanBurstRecorded|DaemonThroughput' -benchtime 3x ./internal/daemon
gobench -bench BanCounts -benchtime 20000x ./internal/store
gobench -bench EachBan -benchtime 3x ./internal/store
if [[ $(id -u) == 0 ]]; then
  gobench -bench KernelBans -benchtime 2x ./actions
  gobench -bench Restore -benchtime 2x ./internal/daemon
else
  echo "(kernel and restore benchmarks need root: network namespaces)"
fi
printf '```\n'
