#!/usr/bin/env bash
# ab.sh: ApacheBench (apache2-utils) against the evapi demo, 127.0.0.1 only.
#
#   examples/curl/ab.sh [--base http://127.0.0.1:8000] [--delay-ms 4000]
#                       [--start BUILD_DIR]
#
#   --base URL        server to load (must be http://127.0.0.1[:PORT])
#   --delay-ms MS     the server's --delay-ms (default 4000)
#   --start BUILD_DIR start BUILD_DIR/examples/demo on a free 127.0.0.1 port
#                     with --delay-ms MS, and stop it (by PID) at the end
#
# 1. ab -n 2000 -c 50 BASE/             throughput of a trivial inline route
# 2. ab -n 12 -c 12 BASE/async-sleep    12 concurrent non-blocking sleeps:
#                                       each request takes ~1 delay
# Note: ab (2.3, apache2-utils 2.4.71) sends its FIRST request alone and
# opens the other -c connections only once that one has answered, so run 2
# takes ~2 delays in all: 1 for the lone first request, 1 for the other 11
# together (a server that serialised them would need 12 delays).
# Bounded: 2000 + 12 requests, each run under `timeout`. Exits 1 if a run
# fails (errors, non-2xx, longest request >= 1.5 delays, or run 2 takes
# >= 2.5 delays).
set -euo pipefail

PROG=${0##*/}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

usage() {
	echo "usage:"
	sed -n '5,12s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"
}

# shellcheck source-path=SCRIPTDIR source=common.sh
. "$HERE/common.sh"
parse_args "$@"
command -v ab >/dev/null || die "ab is not installed (apt-get install apache2-utils)"
command -v timeout >/dev/null || die "timeout (coreutils) is not installed"
case $BASE in
http://127.0.0.1:* | http://127.0.0.1) ;;
*) die "ab.sh only loads a server on 127.0.0.1 (got --base $BASE)" ;;
esac
setup_server

DELAY_US=$((DELAY_MS * 1000))
FAILED=0

# run_ab TITLE TIMEOUT_S AB_ARGS... ; prints the interesting lines, sets
# TAKEN_US (ab's "Time taken for tests") and fails the run on errors.
run_ab() {
	local title=$1 limit=$2 out="$TMPD/ab.out" rc=0 failed non2xx taken
	shift 2
	echo
	echo "== $title"
	echo "  \$ ab $*"
	timeout "$limit" ab "$@" >"$out" 2>&1 || rc=$?
	grep -E '^(Complete requests|Failed requests|Non-2xx responses|Time taken for tests|Requests per second|Time per request)' "$out" |
		sed 's/^/  /' || true
	awk '$1 == "Total:" { printf "  Each request (ms):      min %s, mean %s, median %s, max %s\n", $2, $3, $5, $6 }' "$out"
	failed=$(awk -F: '/^Failed requests/ {gsub(/ /, "", $2); print $2}' "$out")
	non2xx=$(awk -F: '/^Non-2xx responses/ {gsub(/ /, "", $2); print $2}' "$out")
	taken=$(awk -F: '/^Time taken for tests/ {split($2, a, " "); print a[1]}' "$out")
	if [ "$rc" -ne 0 ] || [ -z "$taken" ] || [ "${failed:-1}" != 0 ] || [ -n "$non2xx" ]; then
		echo "  FAIL: ab exit $rc, failed=${failed:-?}, non-2xx=${non2xx:-0}"
		tail -n 5 "$out" | sed 's/^/    /'
		FAILED=1
		TAKEN_US=
		return 1
	fi
	# "1.006 seconds" -> microseconds, without floating point in bash
	TAKEN_US=$(awk -v t="$taken" 'BEGIN { printf "%d", t * 1000000 }')
	LONGEST_US=$(awk '$1 == "100%" { printf "%d", $2 * 1000 }' "$out")
	LONGEST_US=${LONGEST_US:-0}
	return 0
}

if run_ab "2000 x GET / with 50 concurrent connections" 60 \
	-n 2000 -c 50 "$BASE/"; then
	echo "  PASS: 2000 requests, 0 failed"
fi

if run_ab "12 x GET /async-sleep, all 12 at once [delay $(fmt_s "$DELAY_US") s]" \
	$(((3 * DELAY_MS) / 1000 + 30)) -n 12 -c 12 -s $(((3 * DELAY_MS) / 1000 + 10)) \
	"$BASE/async-sleep"; then
	D=$(fmt_s "$DELAY_US")
	if [ $((LONGEST_US * 10 >= DELAY_US * 9 && LONGEST_US * 10 < DELAY_US * 15)) = 1 ] &&
		[ $((TAKEN_US * 10 < DELAY_US * 25)) = 1 ]; then
		echo "  PASS: every /async-sleep took ≈1 delay (longest $(fmt_s "$LONGEST_US") s, pass if 0.9 x $D <= longest < 1.5 x $D s);"
		echo "        whole run $(fmt_s "$TAKEN_US") s = ab's lone first request + the other 11 together (pass if < 2.5 x $D s; serialised would be 12 x $D s)"
	else
		echo "  FAIL: expected each /async-sleep to take ≈1 delay and the run < 2.5 delays; longest $(fmt_s "$LONGEST_US") s, run $(fmt_s "$TAKEN_US") s"
		FAILED=1
	fi
fi

echo
if [ "$FAILED" -ne 0 ]; then
	echo "$PROG: FAILED"
	exit 1
fi
echo "$PROG: ok"
