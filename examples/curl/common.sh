# shellcheck shell=bash
# common.sh: shared by experiments.sh, declared.sh and ab.sh (sourced, not run).
#
# Parses  [--base URL] [--delay-ms MS] [--start BUILD_DIR]  into BASE,
# DELAY_MS and BUILD_DIR; with --start, runs BUILD_DIR/examples/demo on a
# free 127.0.0.1 port and stops it (by its PID) when the script exits.
# A script that sets PLOT_OK=1 before parse_args also takes --plot DIR
# (PLOT_DIR); the demo's log then gets a second copy, DEMO_LOG.ts, with
# each line stamped (us since the epoch) as it arrives.

BASE=http://127.0.0.1:8000
DELAY_MS=4000
BUILD_DIR=
DEMO_PID=
DEMO_LOG=
DEMO_ARGS=() # extra demo arguments for --start
PLOT_DIR=
TMPD=$(mktemp -d "${TMPDIR:-/tmp}/evapi-curl.XXXXXX")

cleanup() {
	if [ -n "$DEMO_PID" ] && kill -0 "$DEMO_PID" 2>/dev/null; then
		kill "$DEMO_PID" 2>/dev/null || true
		wait "$DEMO_PID" 2>/dev/null || true
	fi
	rm -rf "$TMPD"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

die() {
	echo "$PROG: $*" >&2
	exit 2
}

parse_args() {
	while [ $# -gt 0 ]; do
		case $1 in
		--base) [ $# -ge 2 ] || die "--base needs a URL"; BASE=${2%/}; shift 2 ;;
		--base=*) BASE=${1#*=}; BASE=${BASE%/}; shift ;;
		--delay-ms) [ $# -ge 2 ] || die "--delay-ms needs a number"; DELAY_MS=$2; shift 2 ;;
		--delay-ms=*) DELAY_MS=${1#*=}; shift ;;
		--start) [ $# -ge 2 ] || die "--start needs BUILD_DIR"; BUILD_DIR=$2; shift 2 ;;
		--start=*) BUILD_DIR=${1#*=}; shift ;;
		--plot) [ "${PLOT_OK:-0}" = 1 ] || { usage >&2; exit 2; }
			[ $# -ge 2 ] || die "--plot needs a directory"; PLOT_DIR=$2; shift 2 ;;
		--plot=*) [ "${PLOT_OK:-0}" = 1 ] || { usage >&2; exit 2; }
			PLOT_DIR=${1#*=}; shift ;;
		-h | --help) usage; exit 0 ;;
		*) usage >&2; exit 2 ;;
		esac
	done
	case $DELAY_MS in
	'' | *[!0-9]*) die "--delay-ms must be a whole number of milliseconds" ;;
	esac
	[ "$DELAY_MS" -ge 100 ] || die "--delay-ms must be >= 100 (the verdicts compare against it)"
	case $BASE in
	http://*) ;;
	*) die "--base must look like http://127.0.0.1:8000" ;;
	esac
}

# Microseconds since the epoch, from bash's own clock (no fork).
now_us() {
	local t=${EPOCHREALTIME/[.,]/}
	echo "$t"
}

# us -> "S.mmm"
fmt_s() {
	printf '%d.%03d' $(($1 / 1000000)) $((($1 % 1000000) / 1000))
}

pick_port() {
	if command -v python3 >/dev/null 2>&1; then
		python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()' && return 0
	fi
	# No python3: try random ports until one refuses a connection.
	local p
	for _ in $(seq 1 50); do
		p=$((20000 + RANDOM % 20000))
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			echo "$p"
			return 0
		fi
	done
	return 1
}

# Copies stdin to $1 and, each line stamped with when it arrived (us
# since the epoch), to $2: the demo's log has no times of its own, and a
# plot places the watchdog's reports by them.
stamp_lines() {
	local line
	while IFS= read -r line; do
		printf '%s\n' "$line" >>"$1"
		printf '%s %s\n' "${EPOCHREALTIME/[.,]/}" "$line" >>"$2"
	done
}

# Start BUILD_DIR/examples/demo, set BASE to it; retries if the port got taken.
start_demo() {
	local bin="$BUILD_DIR/examples/demo" port
	[ -x "$bin" ] || die "no demo binary at $bin (build first: cd BUILD_DIR && make)"
	DEMO_LOG="$TMPD/demo.log"
	for _ in 1 2 3 4 5; do
		port=$(pick_port) || die "cannot find a free port"
		: >"$DEMO_LOG"
		: >"$DEMO_LOG.ts"
		if [ -n "$PLOT_DIR" ]; then
			# $! is the demo's PID; the stamper ends at its EOF
			"$bin" --host 127.0.0.1 --port "$port" --delay-ms "$DELAY_MS" --quiet \
				--upstream-delay-ms "$DELAY_MS" "${DEMO_ARGS[@]}" \
				> >(stamp_lines "$DEMO_LOG" "$DEMO_LOG.ts") 2>&1 &
		else
			"$bin" --host 127.0.0.1 --port "$port" --delay-ms "$DELAY_MS" --quiet \
				--upstream-delay-ms "$DELAY_MS" \
				"${DEMO_ARGS[@]}" >"$DEMO_LOG" 2>&1 &
		fi
		DEMO_PID=$!
		for _ in $(seq 1 100); do
			if ! kill -0 "$DEMO_PID" 2>/dev/null; then
				break # exited: port taken? try another one
			fi
			if curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$port/"; then
				BASE="http://127.0.0.1:$port"
				echo "started $bin --port $port --delay-ms $DELAY_MS (pid $DEMO_PID)"
				return 0
			fi
			sleep 0.05
		done
		kill "$DEMO_PID" 2>/dev/null || true
		wait "$DEMO_PID" 2>/dev/null || true
		DEMO_PID=
	done
	cat "$DEMO_LOG" >&2 || true
	die "the demo did not come up"
}

# Use the server at BASE, or start one with --start.
setup_server() {
	if [ -n "$BUILD_DIR" ]; then
		start_demo
	else
		curl -s -o /dev/null --max-time 2 "$BASE/" ||
			die "nothing answers at $BASE/ (start the demo, or pass --start BUILD_DIR)"
		echo "using the server at $BASE (its --delay-ms must be $DELAY_MS)"
	fi
}
