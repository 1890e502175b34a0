#!/usr/bin/env bash
# declared.sh: the README's requests for declared parameters and bodies,
# uploads and OpenAPI, against the evapi demo; each answer must be exactly
# the one the README shows.
#
#   examples/curl/declared.sh [--base http://127.0.0.1:8000] [--start BUILD_DIR]
#
#   --base URL        server to test (default http://127.0.0.1:8000; its
#                     upload directory must not hold hello.txt, passwd or
#                     report.txt yet)
#   --start BUILD_DIR start BUILD_DIR/examples/demo on a free 127.0.0.1 port
#                     with a fresh --upload-dir, and stop it (by PID) at the end
# Exits 1 if an answer differs, 2 on a usage or setup error.
set -euo pipefail

PROG=${0##*/}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

usage() {
	echo "usage:"
	sed -n '6,12s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"
}

# shellcheck source-path=SCRIPTDIR source=common.sh
. "$HERE/common.sh"
parse_args "$@"
command -v curl >/dev/null || die "curl is not installed"
mkdir "$TMPD/up"
DEMO_ARGS=(--upload-dir "$TMPD/up")
setup_server
FAILED=0

# expect STATUS BODY curl-arguments...
expect() {
	local status=$1 body=$2 got
	shift 2
	got=$(cd "$TMPD" && curl -s --max-time 10 -w '\n%{http_code}' "$@") || true
	if [ "$got" = "$body"$'\n'"$status" ]; then
		echo "ok   $status curl $*"
	else
		echo "BAD  curl $*"
		echo "     want $status $body"
		echo "     got  ${got//$'\n'/ }"
		FAILED=1
	fi
}

printf 'hello\n' >"$TMPD/hello.txt"
expect 200 '{"item_id":42,"q":"pen","limit":5}' "$BASE/items/42?q=pen&limit=5"
expect 422 '{"detail":[{"type":"greater_than_equal","loc":["path","item_id"],"msg":"Input should be greater than or equal to 1","input":"0","ctx":{"ge":1}},{"type":"less_than_equal","loc":["query","limit"],"msg":"Input should be less than or equal to 100","input":"500","ctx":{"le":100}}]}' \
	"$BASE/items/0?limit=500"
expect 201 '{"name":"pen","price":1.5,"tags":["office"]}' \
	-X POST "$BASE/items" -H 'Content-Type: application/json' -d '{"name":"pen","price":1.5,"tags":["office"]}'
expect 422 '{"detail":[{"type":"missing","loc":["body","name"],"msg":"Field required","input":{"price":"free"}},{"type":"float_parsing","loc":["body","price"],"msg":"Input should be a valid number, unable to parse string as a number","input":"free"}]}' \
	-X POST "$BASE/items" -H 'Content-Type: application/json' -d '{"price":"free"}'
expect 415 '{"detail":"Unsupported Media Type: expected application/json"}' \
	-X POST "$BASE/items" -d '{"name":"pen","price":1}'
expect 200 '{"files":[{"field":"file","filename":"hello.txt","stored":"hello.txt","size":6,"content_type":"text/plain"},{"field":"file","filename":"../../etc/passwd","stored":"passwd","size":6,"content_type":"text/plain"}]}' \
	-F title=notes -F file=@hello.txt -F 'file=@hello.txt;filename=../../etc/passwd' "$BASE/upload"
expect 200 '{"files":[{"field":"file","filename":"report.txt","stored":"report.txt","size":6,"content_type":"application/octet-stream"}]}' \
	-T hello.txt "$BASE/files/report.txt"
if [ -n "$BUILD_DIR" ]; then
	stored=$(cd "$TMPD/up" && ls | tr '\n' ' ')
	if [ "$stored" = "hello.txt passwd report.txt " ]; then
		echo "ok   stored in the upload directory: $stored"
	else
		echo "BAD  upload directory holds: $stored"
		FAILED=1
	fi
fi
doc=$(curl -s --max-time 10 "$BASE/openapi.json") || true
head=${doc:0:48}
if [ "$head" = '{"openapi":"3.1.0","info":{"title":"evapi demo",' ]; then
	echo "ok   /openapi.json is OpenAPI 3.1"
else
	echo "BAD  /openapi.json starts with: $head"
	FAILED=1
fi
page=$(curl -s --max-time 10 "$BASE/docs") || true
init=$(curl -s --max-time 10 "$BASE/docs/evapi-docs.js") || true
if [[ $page == *'src="docs/swagger-ui-bundle.js"'* && $init == *'url: "openapi.json"'* ]]; then
	echo "ok   /docs is Swagger UI, reading openapi.json (relative to /docs)"
elif [[ $page == *"fetch('openapi.json')"* ]]; then
	echo "ok   /docs reads openapi.json (relative to /docs; no Swagger UI files)"
else
	echo "BAD  /docs"
	FAILED=1
fi
[ "$FAILED" -eq 0 ] && echo "$PROG: all answers match the README"
exit "$FAILED"
