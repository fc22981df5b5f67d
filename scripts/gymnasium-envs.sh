#!/usr/bin/env bash
# rlcpc on Gymnasium environments from PyPI: installs gymnasium, minigrid, popgym and
# ale-py (which ships its ROMs) into a virtual environment on first use, then trains a
# few thousand steps on one environment of each, through `gymnasium:` ids.
#
#   scripts/gymnasium-envs.sh                 # venv in .venv-gymnasium
#   VENV=/path STEPS=20000 scripts/gymnasium-envs.sh
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv-gymnasium}
STEPS=${STEPS:-4000}
RLCPC=${RLCPC:-target/release/rlcpc}
if [[ ! -x $VENV/bin/python ]] || ! "$VENV/bin/python" -c 'import minigrid, popgym, ale_py, cv2' 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q "gymnasium==1.4.0" minigrid popgym ale-py opencv-python-headless
fi
[[ -x $RLCPC ]] || cargo build --release
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
# id | extra settings
cases=(
  "gymnasium:minigrid:MiniGrid-MemoryS7-v0|--config popgym --aux none --set env.wrappers=[\"minigrid\"]"
  "gymnasium:popgym:popgym-RepeatPreviousEasy-v0|--config popgym --aux cpc"
  "gymnasium:ALE/Pong-v5|--set env.wrappers=[\"atari\"] --set model.encoder=\"conv\" --set env.num_envs=8 --set run.workers=2"
)
set -f # the settings hold brackets
for c in "${cases[@]}"; do
  id=${c%%|*}
  # shellcheck disable=SC2086 # the settings are words
  line=$("$RLCPC" train --quiet --out "$out/$RANDOM" --set "env.id=\"$id\"" \
    --set "env.python=\"$VENV/bin/python\"" --set run.total_steps="$STEPS" \
    --set run.target_return=0 ${c#*|} 2>/dev/null | grep ' steps/s)')
  echo "$id: $line"
done
