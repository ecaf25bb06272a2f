#!/usr/bin/env bash
# make bench-logs: a 1 GB Istio-format access log (about 2 % failing lines across the classes),
# then, on the same file in the same run, `meshtriage logs --format json` and `grep -c ' UF '`,
# both on one core with the file in the page cache. Prints MB/s, lines/s, the ratio and the
# peak memory (also for a tenth of the file: flat memory means the same figure).
set -euo pipefail
BIN=${BIN:-target/release/meshtriage}
GEN=${GEN:-target/release/examples/gen_access_log}
DIR=${DIR:-target/bench-logs}
BYTES=${BENCH_LOG_BYTES:-1073741824}
LOG=$DIR/istio-$BYTES.log
mkdir -p "$DIR"
if [ ! -s "$LOG" ] || [ "$(stat -c %s "$LOG")" -lt "$BYTES" ]; then
  "$GEN" "$LOG" "$BYTES"
fi
head -c $((BYTES / 10)) "$LOG" | sed '$d' > "$DIR/tenth.log"
cat "$LOG" > /dev/null # into the page cache
ONE_CORE=""
command -v taskset >/dev/null && ONE_CORE="taskset -c $(( $(nproc) - 1 ))"
TIME=""
[ -x /usr/bin/time ] && TIME="/usr/bin/time -f %e,%U,%S,%M -o $DIR/time.txt"
# Runs a command (stdout to $2) and prints "wall,user,sys,peak_kib" (n/a without /usr/bin/time).
measure() {
  local out=$1; shift
  local t0 t1
  t0=$(date +%s.%N)
  $TIME $ONE_CORE "$@" > "$out" 2>> "$DIR/stderr.txt"
  t1=$(date +%s.%N)
  if [ -n "$TIME" ]; then tail -1 "$DIR/time.txt"; else python3 -c "print(f'{$t1 - $t0:.2f},n/a,n/a,n/a')"; fi
}
lines=$(wc -l < "$LOG")
size=$(stat -c %s "$LOG")
grep_t=$(measure "$DIR/grep.txt" grep -c ' UF ' "$LOG")
mt_t=$(measure "$DIR/rows.jsonl" "$BIN" logs --format json "$LOG")
tenth_t=$(measure /dev/null "$BIN" logs --format json "$DIR/tenth.log")
uf=$(cat "$DIR/grep.txt")
rows=$(wc -l < "$DIR/rows.jsonl")

python3 - "$size" "$lines" "$grep_t" "$mt_t" "$tenth_t" "$uf" "$rows" <<'PY'
import sys
size, lines = int(sys.argv[1]), int(sys.argv[2])
def parse(t):
    w, u, s, m = t.split(",")
    cpu = float(u) + float(s) if u != "n/a" else None
    return float(w), cpu, m
gw, gc, gm = parse(sys.argv[3])
mw, mc, mm = parse(sys.argv[4])
_, _, tm = parse(sys.argv[5])
uf, rows = int(sys.argv[6]), int(sys.argv[7])
mb = size / 1e6
print(f"file: {mb:,.0f} MB, {lines:,} lines, {rows:,} failing rows written (grep ' UF ': {uf:,} lines)")
print(f"{'':32} {'wall s':>7} {'MB/s':>7} {'lines/s':>11} {'cpu s':>6} {'MB/s of cpu':>11}")
for name, w, c in (("grep -c ' UF '", gw, gc), ("meshtriage logs --format json", mw, mc)):
    cpu = f"{c:6.2f} {mb / c:11,.0f}" if c else "   n/a         n/a"
    print(f"{name:32} {w:7.2f} {mb / w:7,.0f} {lines / w:11,.0f} {cpu}")
ratio_cpu = f", {gc / mc:.2f} by cpu time" if gc and mc else ""
print(f"speed ratio meshtriage/grep: {gw / mw:.2f} by wall time{ratio_cpu} (goal >= 0.33)")
print(f"peak RSS of meshtriage: {mm} KiB on the whole file, {tm} KiB on a tenth of it")
PY
