#!/usr/bin/env bash
# Build llama.cpp's llama-server for tests/interop/test_llama_server.py (tox -e interop, commands_pre).
# The shared script builds on its first start (~7 min on 2 cores): start it once on a free
# loopback port and stop it again. Nothing to do when the binary is already there (and then a
# server someone started from the same REALSERVERS_ROOT is left alone).
#   build_llama_server.sh SCRIPTS_DIR
set -euo pipefail
SCRIPTS=${1:?usage: build_llama_server.sh SCRIPTS_DIR}
ROOT=${REALSERVERS_ROOT:-$HOME/.cache/chatprobe-realservers}
if [ -x "$ROOT/llama-server/build/bin/llama-server" ]; then
  echo "llama-server already built: $ROOT/llama-server/build/bin/llama-server"
  exit 0
fi
if [ ! -f "$SCRIPTS/llama_server.sh" ]; then
  echo "no $SCRIPTS/llama_server.sh: the llama-server interop test will skip" >&2
  exit 1
fi
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
echo "building llama-server under $ROOT (first time: about 7 minutes)"
status=0
bash "$SCRIPTS/llama_server.sh" start "$PORT" || status=$?
bash "$SCRIPTS/llama_server.sh" stop || true
exit "$status"
