#!/usr/bin/env bash
# experiments.sh: the three concurrency experiments against the evapi demo,
# with curl --parallel and the *.cfg files next to this script.
#
#   examples/curl/experiments.sh [--base http://127.0.0.1:8000] [--delay-ms 4000]
#                                [--start BUILD_DIR] [--plot DIR]
#
#   --base URL        server to test (default http://127.0.0.1:8000)
#   --delay-ms MS     the server's --delay-ms (default 4000); the verdicts use it
#   --start BUILD_DIR start BUILD_DIR/examples/demo on a free 127.0.0.1 port
#                     with --delay-ms MS, and stop it (by PID) at the end
#   --plot DIR        also write DIR/experiment-N-NAME.png per experiment
#                     (gnuplot): a bar per request, start to finish, coloured
#                     by route; with --start, the watchdog's stall reports too
#
# 1. 4 x /async-sleep              -> all finish together after ~1 delay
# 2. 2 x /slow, then 4 x /async-sleep -> /slow blocks the loop twice in a
#                                     row: nothing moves for ~2 delays, then
#                                     the async sleeps run (~3 in all)
# 3. 6 x /sync-slow                -> blocking, but on 6 pool workers:
#                                     all finish together after ~1 delay
# 4. 4 x /multi-fetch              -> two upstream calls each, non-blocking
#                                     and gathered: ~1 delay in all
# 5. 4 x /sync-multi-fetch         -> two blocking upstream calls each, one
#                                     after the other, on pool workers:
#                                     ~2 delays
# 6. 6 x /db/users/{id}            -> queries waiting in the database, not
#                                     on the loop: ~1 delay in all
# 7. 6 x /db/sync-users/{id}       -> blocking queries on 6 pool workers:
#                                     ~1 delay in all
# 8. 2 x /db/blocking-users/{id}, then 4 x / -> blocking queries ON THE
#                                     LOOP: they run one after the other
#                                     (~2 delays) and GET / waits behind them
# (the demo's upstream answers after --delay-ms unless told otherwise, and
# experiments 6-8 need the demo's --db-slow-ms equal to --delay-ms, its
# default; its default database is a SQLite file, --database
# postgresql://... for PostgreSQL)
# Exits 1 if a verdict fails, 2 on a usage or setup error.
set -euo pipefail

PROG=${0##*/}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

usage() {
	echo "usage:"
	sed -n '5,15s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"
}
PLOT_OK=1

# shellcheck source-path=SCRIPTDIR source=common.sh
. "$HERE/common.sh"
parse_args "$@"
command -v curl >/dev/null || die "curl is not installed"
if [ -n "$PLOT_DIR" ]; then
	command -v gnuplot >/dev/null || die "--plot needs gnuplot (apt-get install gnuplot-nox)"
	mkdir -p "$PLOT_DIR" || die "cannot create $PLOT_DIR"
fi
setup_server

DELAY_US=$((DELAY_MS * 1000))
MAX_TIME=$(((3 * DELAY_MS + 999) / 1000 + 10)) # per-transfer bound, seconds
# curl block-buffers its stdout into a pipe; line-buffer it so that each
# write-out line is stamped when its transfer really completes.
STDBUF=()
if command -v stdbuf >/dev/null 2>&1; then
	STDBUF=(stdbuf -oL)
fi
FAILED=0

# Copy a .cfg with the base URL and max-time rewritten.
make_cfg() {
	local src="$HERE/$1" dst="$TMPD/$1" base
	base=$(printf '%s' "$BASE" | sed 's/[#&\\]/\\&/g')
	sed -e "s#http://127\\.0\\.0\\.1:8000#$base#g" \
		-e "s/^max-time = .*/max-time = $MAX_TIME/" "$src" >"$dst"
	echo "$dst"
}

run_curl() {
	local rc=0
	"${STDBUF[@]}" curl --parallel --parallel-immediate --parallel-max 6 \
		--config "$1" || rc=$?
	echo "curl-exit $rc"
}

# ratio of a duration in us to the delay, as "N.NN"
delays() {
	local h=$(($1 * 100 / DELAY_US))
	printf '%d.%02d' $((h / 100)) $((h % 100))
}

# run_experiment NUMBER CFG COUNT TITLE
# Sets TOTAL_US, OK (number of 200s), and per-path first/last completions in
# FIRST[path] / LAST[path] (us since the experiment's start).
declare -A FIRST LAST
run_experiment() {
	local num=$1 cfg t0 t1 out="$TMPD/out.$1" stamp tt code url rest path rel
	cfg=$(make_cfg "$2")
	local count=$3 title=$4
	echo
	echo "== Experiment $num: $title [delay $(fmt_s "$DELAY_US") s]"
	printf '  %9s  %10s  %4s  %s\n' "done at" "curl total" "HTTP" "URL"
	OK=0 CURL_RC=0
	LOG_FROM=0
	if [ -n "$DEMO_LOG" ]; then
		LOG_FROM=$(wc -l <"$DEMO_LOG")
	fi
	FIRST=() LAST=()
	t0=${EPOCHREALTIME/[.,]/}
	run_curl "$cfg" 2>"$out.err" | while IFS= read -r line; do
		printf '%s %s\n' "${EPOCHREALTIME/[.,]/}" "$line"
	done >"$out"
	t1=${EPOCHREALTIME/[.,]/}
	TOTAL_US=$((t1 - t0))
	while read -r stamp tt code url rest; do
		if [ "$tt" = curl-exit ]; then
			CURL_RC=$code
			continue
		fi
		rel=$((stamp - t0))
		printf '  %7s s  %8s s  %4s  %s\n' "$(fmt_s "$rel")" "${tt:0:6}" "$code" "$url"
		[ "$code" = 200 ] && OK=$((OK + 1))
		path=${url#*://*/}
		path=/${path%%\?*}
		[ -n "${FIRST[$path]:-}" ] || FIRST[$path]=$rel
		LAST[$path]=$rel
	done <"$out"
	sed 's/^/  /' "$out.err"
	echo "  total wall time: $(fmt_s "$TOTAL_US") s ($(delays "$TOTAL_US") delays)"
	server_counters
	if [ -n "$PLOT_DIR" ]; then
		plot_experiment "$num" "${2%.cfg}" "$title" "$t0" "$t1" "$out"
	fi
	if [ "$OK" -ne "$count" ]; then
		echo "  FAIL: only $OK of $count requests answered 200 (curl exit $CURL_RC)"
		FAILED=1
		return 1
	fi
	return 0
}

# plot_experiment NUMBER NAME TITLE T0 T1 OUT: DIR/experiment-NUMBER-NAME.png.
# One bar per request (y: its req=N), from when curl started it (completion
# stamp minus curl's time_total) to when it completed, coloured by route
# (path with numeric segments as {id}); each stall the demo's watchdog
# reported during the experiment is a red band over the time it held the
# loop (its report time minus its duration, to the report).
plot_experiment() {
	local num=$1 name=$2 title=$3 t0=$4 t1=$5 out=$6
	local dat="$TMPD/plot.$num.dat" stalls="$TMPD/plot.$num.stalls"
	local gp="$TMPD/plot.$num.gp" png="$PLOT_DIR/experiment-$num-$name.png"
	local routes nroutes
	# "route<TAB>y start end" lines, seconds since t0, grouped by route
	awk -v t0="$t0" '$2 != "curl-exit" {
		end = ($1 - t0) / 1e6; start = end - $2; if (start < 0) start = 0
		url = $4; sub(/^[a-z]+:\/\/[^\/]*/, "", url)
		y = url; if (!sub(/.*[?&]req=/, "", y)) y = NR; sub(/[^0-9].*/, "", y)
		path = url; sub(/\?.*/, "", path); gsub(/\/[0-9]+/, "/{id}", path)
		printf "%s\t%s %.4f %.4f\n", path, y, start, end
	}' "$out" | sort -n -k2,2 | awk -F '\t' '
		!($1 in n) { order[++k] = $1 } { rows[$1, ++n[$1]] = $0 }
		END { for (i = 1; i <= k; i++) for (j = 1; j <= n[order[i]]; j++)
			print rows[order[i], j] }' >"$dat.raw" # routes by first request
	routes=$(cut -f1 "$dat.raw" | uniq | tr '\n' ' ')
	nroutes=$(cut -f1 "$dat.raw" | uniq | wc -l)
	# gnuplot index blocks: two blank lines between routes
	awk -F '\t' 'NR > 1 && $1 != prev { printf "\n\n" } { print $2; prev = $1 }' \
		"$dat.raw" >"$dat"
	: >"$stalls"
	if [ -s "${DEMO_LOG:-/nonexistent}.ts" ]; then
		awk -v t0="$t0" -v t1="$t1" '$1 >= t0 && $1 <= t1 + 500000 &&
			match($0, /loop stalled [0-9]+ ms in [^(]*/) {
			s = substr($0, RSTART, RLENGTH); split(s, w, " ")
			name = s; sub(/^loop stalled [0-9]+ ms in /, "", name); sub(/ +$/, "", name)
			at = ($1 - t0) / 1e6
			printf "%.4f %.4f %d %s\n", at - w[3] / 1000, at, w[3], name
		}' "${DEMO_LOG}.ts" >"$stalls"
	fi
	{
		echo "set terminal pngcairo size 900,$((160 + 32 * $(wc -l <"$dat.raw"))) font 'sans,10'"
		echo "set output '$png'"
		printf 'set title "%s" noenhanced\n' "Experiment $num: ${title//\"/\'}"
		echo "set xlabel 'seconds since the experiment started (delay $(fmt_s "$DELAY_US") s)'"
		echo "set ylabel 'request (req=N)'"
		echo "set xrange [0:$(awk -v t="$TOTAL_US" 'BEGIN { printf "%.3f", t / 1e6 * 1.08 + 0.05 }')]"
		# rows 1..N, and room above row 1 for the stall labels
		echo "set yrange [$(wc -l <"$dat.raw").7:-0.8]"
		echo "set ytics 1,1"
		echo "set grid xtics"
		echo "set key outside right top noenhanced"
		echo "set style fill solid 0.85 border -1"
		local i=0 a b ms who stall_key=
		while read -r a b ms who; do
			i=$((i + 1))
			echo "set object $i rect from $a, graph 0 to $b, graph 1 behind fc rgb '#d62728' fs transparent solid 0.18 border rgb '#d62728'"
			# staggered, so back-to-back stalls keep readable labels
			echo "set label $i 'stall $ms ms in $(printf '%s' "$who" | tr -d "'")' at $a, first $([ $(((i - 1) % 2)) = 0 ] && echo -0.5 || echo 0) left offset 0.5,0 tc rgb '#d62728' front noenhanced"
		done <"$stalls"
		echo "routes = '$routes'"
		echo "colors = '#1f77b4 #ff7f0e #2ca02c #9467bd #8c564b #e377c2 #17becf'"
		if [ "$i" -gt 0 ]; then
			echo "set style line 99 lc rgb '#d62728' lw 8"
			stall_key=", NaN with lines ls 99 title 'loop stall (watchdog)'"
		fi
		echo "plot for [r=1:$nroutes] '$dat' index (r-1) using ((\$2+\$3)/2):1:((\$3-\$2)/2):(0.32) with boxxyerror lc rgb word(colors, r) title word(routes, r)$stall_key"
	} >"$gp"
	if gnuplot "$gp" 2>"$gp.err"; then
		echo "  plot: $png ($(wc -l <"$stalls") stall(s) marked)"
	else
		echo "  FAIL: gnuplot could not draw $png:"
		sed 's/^/    /' "$gp.err"
		FAILED=1
	fi
}

# The server's own counters (GET /_/stats, when it serves it) since it
# started: they explain the timings (stalls, loop lag, pool waits).
server_counters() {
	curl -s --max-time 2 "$BASE/_/stats" 2>/dev/null | python3 -c '
import json, sys
try:
    s = json.load(sys.stdin)
except ValueError:
    sys.exit(0)
lag, pool, out = s["loop_lag_ms"], s["pool"], s.get("outbound", {})
by = ", ".join("%s: %d" % kv for kv in s["stalls_by_route"].items())
print("  server counters: stalls %d%s, loop lag max %.0f ms, pool busy %d "
      "queued %d (longest wait %.0f ms), outbound in flight %s"
      % (s["stalls"], " (" + by + ")" if by else "", lag["max"], pool["busy"],
         pool["queued"], pool["max_wait_ms"], out.get("in_flight", "-")))
' 2>/dev/null || true
}

# With --start: what the server logged (warnings; the demo runs --quiet)
# during the last experiment.
server_said() {
	[ -n "$DEMO_LOG" ] || return 0
	if [ "$(wc -l <"$DEMO_LOG")" -gt "$LOG_FROM" ]; then
		echo "  server log:"
		tail -n +"$((LOG_FROM + 1))" "$DEMO_LOG" | sed 's/^/    /'
	fi
}

verdict() { # PASS? TEXT
	if [ "$1" = 1 ]; then
		echo "  PASS: $2"
	else
		echo "  FAIL: expected: $2"
		FAILED=1
	fi
}

D=$(fmt_s "$DELAY_US")
echo "done at: when curl reported the response, in seconds since the experiment"
echo "started; curl total: curl's own %{time_total} for that transfer."

# Faster than the delay itself: the server sleeps less than --delay-ms says.
too_fast() {
	if [ $((TOTAL_US * 10 < DELAY_US * 9)) = 1 ]; then
		echo "  (faster than one delay: is the server really running with --delay-ms $DELAY_MS?)"
	fi
}

# All the requests of the experiment finished together, in about one delay.
one_delay() { # TEXT
	verdict $((TOTAL_US * 10 >= DELAY_US * 9 && TOTAL_US * 10 < DELAY_US * 15)) \
		"$1 (total $(fmt_s "$TOTAL_US") s, pass if 0.9 x $D <= total < 1.5 x $D s)"
	too_fast
}

if run_experiment 1 async-sleep.cfg 4 "4 x GET /async-sleep (inline, non-blocking sleep)"; then
	one_delay "4 x /async-sleep finished together in ≈1 delay"
fi
server_said

if run_experiment 2 slow-then-async.cfg 6 "2 x GET /slow (blocking sleep on the loop) first, then 4 x GET /async-sleep"; then
	echo "  /slow done at $(fmt_s "${FIRST[/slow]}")..$(fmt_s "${LAST[/slow]}") s;" \
		"/async-sleep done at $(fmt_s "${FIRST[/async-sleep]}")..$(fmt_s "${LAST[/async-sleep]}") s" \
		"(alone they take 1 delay)"
	verdict $((TOTAL_US * 10 >= DELAY_US * 18)) \
		"/async-sleep requests were serialised behind the blocking /slow ones (total $(fmt_s "$TOTAL_US") s, pass if >= 1.8 x $D s)"
fi
server_said

if run_experiment 3 sync-slow.cfg 6 "6 x GET /sync-slow (blocking sleep on pool workers)"; then
	one_delay "6 x /sync-slow finished together in ≈1 delay"
fi
server_said

if run_experiment 4 multi-fetch.cfg 4 "4 x GET /multi-fetch (inline; 2 non-blocking upstream calls each, gathered)"; then
	one_delay "8 upstream calls from 4 inline requests overlapped: ≈1 delay"
fi
server_said

if run_experiment 5 sync-multi-fetch.cfg 4 "4 x GET /sync-multi-fetch (pool; 2 blocking upstream calls each, in turn)"; then
	verdict $((TOTAL_US * 10 >= DELAY_US * 18 && TOTAL_US * 10 < DELAY_US * 25)) \
		"each pool request made its 2 blocking calls in turn: ≈2 delays (total $(fmt_s "$TOTAL_US") s, pass if 1.8 x $D <= total < 2.5 x $D s)"
fi
server_said

if run_experiment 6 db-async.cfg 6 "6 x GET /db/users/{id} (inline; each query takes 1 delay in the database)"; then
	one_delay "6 inline queries waited together: ≈1 delay"
fi
server_said

if run_experiment 7 db-sync.cfg 6 "6 x GET /db/sync-users/{id} (pool; blocking queries, 1 delay each)"; then
	one_delay "6 blocking queries on 6 pool workers finished together: ≈1 delay"
fi
server_said

if run_experiment 8 db-blocking.cfg 6 "2 x GET /db/blocking-users/{id} (blocking query ON THE LOOP) first, then 4 x GET /"; then
	root_last=${LAST[/]:-0}
	echo "  / done at $(fmt_s "${FIRST[/]:-0}")..$(fmt_s "$root_last") s (alone: a millisecond)"
	verdict $((TOTAL_US * 10 >= DELAY_US * 18 && root_last * 10 >= DELAY_US * 9)) \
		"the blocking queries ran one after the other and GET / waited behind them (total $(fmt_s "$TOTAL_US") s, pass if >= 1.8 x $D s and the last / after >= 0.9 x $D s)"
fi
server_said

# The other outbound routes answer what the README says they do.
echo
echo "== Outbound routes, one request each"
for check in '/external-api "data":{"source":"upstream"' \
	'/sync-external-api "data":{"source":"upstream"' \
	'/fan-out?n=20 "calls":20,"ok":20'; do
	path=${check%% *} want=${check#* }
	body=$(curl -s --max-time "$MAX_TIME" "$BASE$path") || body="(curl failed)"
	case $body in
	*"$want"*) echo "  PASS: $path -> $body" ;;
	*) echo "  FAIL: expected $path to answer $want, got: $body"; FAILED=1 ;;
	esac
done

echo
if [ "$FAILED" -ne 0 ]; then
	echo "$PROG: some verdicts FAILED"
	exit 1
fi
echo "$PROG: all verdicts passed"
