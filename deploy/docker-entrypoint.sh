#!/bin/sh
# The entrypoint of the disco-node container (deploy/Dockerfile); the node's folder
# is $DISCO_HOME (/data, a volume).
#   serve [OPTIONS]     (the default) run the node on $DISCO_LISTEN, 0.0.0.0:8750
#                       inside the container: publish it on the host's loopback only
#                       (-p 127.0.0.1:8750:8750) and put the TLS proxy in front
#   healthcheck         exit 0 when the node answers GET /v1/status on $DISCO_LISTEN
#   [disco] COMMAND ... any other disco command on the node in $DISCO_HOME:
#                       init --name NAME, join /genesis.json, status, peer add URL, ...
set -eu
export DISCO_HOME="${DISCO_HOME:-/data}"
listen="${DISCO_LISTEN:-0.0.0.0:8750}"
if [ "${1:-}" = disco ]; then shift; fi
command="${1:-serve}"
if [ $# -gt 0 ]; then shift; fi

case "$command" in
serve)
    if [ ! -f "$DISCO_HOME/node.json" ]; then
        echo "disco: $DISCO_HOME holds no LAB yet: run this image with" \
             "'init --name NAME', then 'join /PATH/genesis.json' (deploy/README.md)" >&2
        exit 2
    fi
    for arg in "$@"; do
        case "$arg" in --listen|--listen=*) exec disco serve "$@" ;; esac
    done
    exec disco serve --listen "$listen" "$@"
    ;;
healthcheck)
    exec python3 - "$listen" <<'PY'
import sys
import urllib.request

host, _, port = sys.argv[1].rpartition(":")
host = host.strip("[]")
if host in ("", "0.0.0.0", "::"):
    host = "127.0.0.1"
url = f"http://{host}:{port}/v1/status"
try:
    with urllib.request.urlopen(url, timeout=5) as answer:
        answer.read()
except Exception as e:  # any failure is "unhealthy", said in one line
    print(f"disco: the node does not answer {url}: {e}", file=sys.stderr)
    sys.exit(1)
PY
    ;;
*)
    exec disco "$command" "$@"
    ;;
esac
