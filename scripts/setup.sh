#!/usr/bin/env bash
# Installs limner into .venv on a fresh machine (Python 3.11, CPU PyTorch 2.13.0).
# Also installs, when run as root with apt, the Noto Color Emoji font (emoji dataset), libcairo2 and npm
# (emoji-styles dataset), WordNet's database (the shapes preset reads other names for its words) and
# chromium and its driver (the tests that render report.html and drive the server's page headless), and
# prometheus for its promtool (the tests of deploy/prometheus/alerts.yml).
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
[ -f /usr/share/fonts/truetype/noto/NotoColorEmoji.ttf ] || missing+=(fonts-noto-color-emoji)
ldconfig -p 2>/dev/null | grep -q libcairo.so.2 || missing+=(libcairo2)   # cairosvg draws the SVG emoji sets
[ -f /usr/share/wordnet/data.noun ] || missing+=(wordnet-base)   # other names for the captions' words (text_anchor_lexicon)
command -v npm >/dev/null || missing+=(npm)   # fetches the open emoji sets of `limner data emoji-styles`
command -v chromium >/dev/null || missing+=(chromium)   # the tests render report.html headless
command -v chromedriver >/dev/null || missing+=(chromium-driver)   # and drive the server's web page
lean=()
command -v promtool >/dev/null || lean+=(prometheus)   # promtool tests the alert rules (the server itself is not used)
if [ $((${#missing[@]} + ${#lean[@]})) -gt 0 ]; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    apt-get update -q >/dev/null
    [ ${#missing[@]} -eq 0 ] || DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null
    [ ${#lean[@]} -eq 0 ] || DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${lean[@]}" >/dev/null
  else
    echo "note: the emoji dataset, WordNet's other names, the browser tests and the alert-rule tests need: sudo apt-get install ${missing[*]} ${lean[*]}" >&2
  fi
fi

PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3)}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
# torch first and pinned exactly: pip then takes the CPU wheel instead of a CUDA build.
.venv/bin/pip install -q --disable-pip-version-check torch==2.13.0
# ray: the optional Ray Serve engine, installed here so that its tests run
.venv/bin/pip install -q --disable-pip-version-check -e ".[test,ray]"
