#!/bin/bash
# Issue 20's four targets, each measured by its bench, one after another on a quiet machine:
#   1 the readers against the decode floor (64 px, 224 px, with boxes and masks), and the peers
#   2 detection, instance masks and segmentation expand against classification
#   3 64 px: the whole command against the ceiling; --help and recipes' start-up
#   4 320 px: expand's own clock and whole command against the ceiling; memory at 20,000 inputs
# The rows nearest their line (item 2's kinds, item 1's targets) take more runs: medians of 7, bests of 5.
# PY: the main environment's python (pip install -e '.[bench]'); FEED: one with torchvision beside
# torch (bench/read.py's docstring says how to make it). docs/bench.md's figures come from this.
#   PY=venv/bin/python FEED=venv-feed/bin/python bash bench/issue20.sh > issue20.log 2>&1
set -u
B=$(cd "$(dirname "$0")" && pwd)
PY=${PY:-python}
FEED=${FEED:-$PY}
export PYTHONPATH="$(dirname "$B")${PYTHONPATH:+:$PYTHONPATH}"
cd "${TMPDIR:-/tmp}" || exit 1
t() { echo "### $* ($(date +%H:%M:%S))"; }
bars() { grep -v '%|'; }
t "item 4: expand at 320 px"; $PY "$B/expand.py" --sizes 320 --images 3200 --no-peers --two-only --repeat 5 2>&1 | bars
t "item 3: start-up and 64 px"; $PY "$B/startup.py" 2>&1 | bars
t "item 2: targets"; $PY "$B/targets.py" --images 2000 --repeat 7 2>&1 | bars
t "item 2: targets, by CPU seconds (steadier)"; $PY "$B/targets.py" --images 1000 --repeat 3 --cpu 2>&1 | bars
t "item 4: memory"; $PY "$B/expand.py" --sizes 64 --images 2000 --no-peers --two-only --memory --repeat 1 2>&1 | bars
t "item 1: read 64 px"; $FEED "$B/read.py" --size 64 --images 4000 --channels-last --warm 1 --epochs 15 2>&1 | bars
t "item 1: read 64 px, boxes and masks"; $FEED "$B/read.py" --size 64 --images 3000 --targets --warm 1 --epochs 15 --repeat 5 2>&1 | bars
t "item 1: read 224 px"; $FEED "$B/read.py" --size 224 --images 3000 --channels-last --warm 1 --epochs 3 2>&1 | bars
t "item 4: expand at 320 px, again"; $PY "$B/expand.py" --sizes 320 --images 3200 --no-peers --two-only --repeat 5 2>&1 | bars
t done
