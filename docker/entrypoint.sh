#!/usr/bin/env bash
# Entrypoint of both images (docker/Dockerfile, docker/Dockerfile.cpu); also runs from a checkout:
#   bash docker/entrypoint.sh [help | demo | <tool>[.py] [args...]]
# Tools are found at run time, so a new tools/*.py needs no change here.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="$ROOT/tools"
PYTHON="${PYTHON:-python3}"

tool_names() {
    local f name
    for f in "$TOOLS"/*.py; do
        [[ -e "$f" ]] || continue
        name="$(basename "$f" .py)"
        [[ "$name" == _* ]] || printf '%s\n' "$name"
    done
}

usage() {
    cat <<EOF
usage: docker run [docker options] IMAGE [COMMAND [ARGS...]]

commands:
  help             this list (also: no command, -h, --help)
  demo             make demo: pack, train, export, reload and predict on the demo digits (CPU image)
  TOOL [ARGS...]   python tools/TOOL.py ARGS (TOOL.py works too); TOOL --help for its options

tools:
EOF
    # Summaries come from each module docstring's first line, read with ast and never by
    # importing: the list must work where MXNet cannot load (GPU image started without --gpus).
    local names
    mapfile -t names < <(tool_names)
    "$PYTHON" - "$TOOLS" "${names[@]}" <<'EOF'
import ast
import os
import sys

tools = sys.argv[1]
for name in sys.argv[2:]:
    try:
        with open(os.path.join(tools, name + ".py"), encoding="utf-8") as f:
            doc = ast.get_docstring(ast.parse(f.read())) or ""
        summary = doc.strip().splitlines()[0] if doc.strip() else "(no docstring)"
    except (OSError, SyntaxError, ValueError) as err:
        summary = "(unreadable: %s)" % type(err).__name__
    print("  %-20s %s" % (name, summary))
EOF
}

die() {
    echo "error: $*" >&2
    exit 2
}

# mxnet-cu112 links libcuda.so.1, which only the host driver provides (mounted by the NVIDIA
# Container Toolkit under --gpus); without it every tool dies in a ctypes traceback.
check_gpu_driver() {
    [[ "${MOBILENET_SKIP_FLAVOUR:-}" == gpu ]] || return 0
    "$PYTHON" -c 'import ctypes; ctypes.CDLL("libcuda.so.1")' 2>/dev/null ||
        die "libcuda.so.1 not found: start the GPU image with 'docker run --gpus all ...' (NVIDIA Container Toolkit), or use the CPU image"
}

cmd="${1:-help}"
if (($#)); then shift; fi

case "$cmd" in
    help | -h | --help)
        usage
        exit 0
        ;;
    demo)
        command -v make >/dev/null || die "'demo' needs make, which only the CPU image (docker/Dockerfile.cpu) has"
        # PY= makes the Makefile use this interpreter, whose packages the image installed,
        # instead of building .venv.
        exec make --no-print-directory -C "$ROOT" demo PY="$PYTHON" "$@"
        ;;
esac

name="${cmd%.py}"
if [[ "$name" =~ ^[A-Za-z0-9][A-Za-z0-9_-]*$ && -f "$TOOLS/$name.py" ]]; then
    check_gpu_driver
    exec "$PYTHON" "$TOOLS/$name.py" "$@"
fi
mapfile -t names < <(tool_names)
valid="$(IFS=,; echo "help,demo,${names[*]}")"
die "unknown command '$cmd'; valid commands: ${valid//,/, }"
