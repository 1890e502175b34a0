#!/usr/bin/env bash
# examples/pubsub/experiment.sh: the articles' pub/sub consumer
# experiment, with a real broker. Starts redis-server on a free port
# (no persistence), then the demo twice with a consumer of the Redis
# channel "experiment" (examples/demo_pubsub.c): on the event loop
# (--pubsub loop) and on the worker pool (--pubsub pool). Each time it
# publishes 5 "non-blocking" and 5 "blocking" messages with redis-cli
# (a blocking one sleeps --block-ms in the consumer) while GET / is
# requested every 100 ms, and prints the GET / latencies, each message's
# start and finish, and what the stall watchdog said.
#
# Usage: examples/pubsub/experiment.sh [--build DIR] [--block-ms MS]
#   --build DIR    the build with examples/demo (default _build/plain)
#   --block-ms MS  what one blocking message sleeps (default 2000; the
#                  articles' 5 s works too, it only takes longer)
# Exits 1 when something did not start or a mode did not finish.
set -u
top=$(cd "$(dirname "$0")/../.." && pwd)
build=$top/_build/plain
block_ms=2000
while [ $# -gt 0 ]; do
	case $1 in
	--build) build=$2; shift 2 ;;
	--block-ms) block_ms=$2; shift 2 ;;
	*) sed -n '2,/^set -u/p' "$0" | sed 's/^# \{0,1\}//;$d' >&2; exit 2 ;;
	esac
done
case $build in /*) ;; *) build=$PWD/$build ;; esac
demo=$build/examples/demo
for tool in redis-server redis-cli curl python3; do
	command -v $tool >/dev/null || { echo "experiment: $tool not found (.ci/deps installs it)" >&2; exit 1; }
done
[ -x "$demo" ] || { echo "experiment: no $demo (build first)" >&2; exit 1; }

free_port() {
	python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

tmp=$(mktemp -d /tmp/evapi-pubsub-XXXXXX)
rpid= dpid= ppid=
cleanup() {
	for p in $ppid $dpid $rpid; do
		kill "$p" 2>/dev/null && wait "$p" 2>/dev/null
	done
	rm -rf "$tmp"
}
trap cleanup EXIT

rport=$(free_port)
redis-server --port "$rport" --bind 127.0.0.1 --save '' --appendonly no \
	--dir "$tmp" --logfile "$tmp/redis.log" &
rpid=$!
for _ in $(seq 100); do
	[ "$(redis-cli -p "$rport" ping 2>/dev/null)" = PONG ] && break
	sleep 0.05
done
[ "$(redis-cli -p "$rport" ping 2>/dev/null)" = PONG ] || { echo "experiment: redis-server did not start" >&2; exit 1; }
echo "redis-server on 127.0.0.1:$rport; a blocking message sleeps $block_ms ms"

status=0
for mode in loop pool; do
	port=$(free_port)
	"$demo" --port "$port" --quiet --redis "redis://127.0.0.1:$rport" \
		--pubsub "$mode" --pubsub-block-ms "$block_ms" 2>"$tmp/demo-$mode.log" &
	dpid=$!
	# up, and its subscription confirmed by Redis
	for _ in $(seq 100); do
		[ "$(redis-cli -p "$rport" pubsub numsub experiment 2>/dev/null | sed -n 2p)" = 1 ] &&
			curl -s -o /dev/null -m 2 "http://127.0.0.1:$port/" && break
		sleep 0.05
	done
	# GET / every 100 ms until told to stop
	rm -f "$tmp/stop"
	(while [ ! -e "$tmp/stop" ]; do
		curl -s -o /dev/null -m 60 -w '%{time_total}\n' "http://127.0.0.1:$port/" || echo fail
		sleep 0.1
	done) >"$tmp/get-$mode.txt" &
	ppid=$!
	sleep 0.3
	for i in 1 2 3 4 5; do redis-cli -p "$rport" publish experiment "non-blocking $i" >/dev/null; done
	for i in 1 2 3 4 5; do redis-cli -p "$rport" publish experiment "blocking $i" >/dev/null; done
	deadline=$((SECONDS + 5 * block_ms / 1000 + 20))
	while [ $SECONDS -lt $deadline ]; do
		curl -s -m 60 "http://127.0.0.1:$port/pubsub/log" >"$tmp/log-$mode.json"
		grep -q '"finished":10' "$tmp/log-$mode.json" && break
		sleep 0.2
	done
	sleep 0.3
	touch "$tmp/stop"
	wait "$ppid"
	ppid=
	kill "$dpid"
	wait "$dpid" 2>/dev/null
	dpid=
	echo
	echo "== consumer on the $mode"
	python3 - "$tmp/get-$mode.txt" "$tmp/log-$mode.json" <<'PY' || status=1
import json, sys
times = [l.strip() for l in open(sys.argv[1]) if l.strip()]
ok = sorted(float(t) * 1000 for t in times if t != "fail")
fails = len(times) - len(ok)
if ok:
    p50 = ok[len(ok) // 2]
    print(f"GET / during the run: {len(ok)} requests, p50 {p50:.0f} ms, "
          f"max {ok[-1]:.0f} ms" + (f", {fails} failed" if fails else ""))
log = json.load(open(sys.argv[2]))
print(f"{'message':<16} {'start':>9} {'finish':>9}  (ms since the first message)")
for m in log["messages"]:
    fin = m["finish_ms"]
    print(f"{m['message']:<16} {m['start_ms']:>9.0f} {fin if fin is None else round(fin):>9}")
b = [m for m in log["messages"] if m["message"].startswith("blocking")]
if log["finished"] != 10 or len(b) != 5:
    print("not every message finished"); sys.exit(1)
print(f"blocking messages: first start {min(m['start_ms'] for m in b):.0f} ms, "
      f"last finish {max(m['finish_ms'] for m in b):.0f} ms")
PY
	grep -m 2 'loop stalled' "$tmp/demo-$mode.log" | sed 's/^/watchdog: /'
	grep -q 'loop stalled' "$tmp/demo-$mode.log" || echo "watchdog: no stall"
done
exit $status
