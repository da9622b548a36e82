#!/usr/bin/env bash
# Installs limner into .venv on a fresh machine (Python 3.11, CPU PyTorch 2.13.0).
# Also installs the Noto Color Emoji font for the emoji dataset when run as root with apt.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -f /usr/share/fonts/truetype/noto/NotoColorEmoji.ttf ]; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    apt-get update -q >/dev/null && apt-get install -y -q fonts-noto-color-emoji >/dev/null
  else
    echo "note: the emoji dataset needs: sudo apt-get install fonts-noto-color-emoji" >&2
  fi
fi

PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3)}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
# torch first and pinned exactly: pip then takes the CPU wheel instead of a CUDA build.
.venv/bin/pip install -q --disable-pip-version-check torch==2.13.0
.venv/bin/pip install -q --disable-pip-version-check -e ".[test]"
