#!/usr/bin/env bash
# rlcpc's default preset (CartPole-v1, MLP, 16 environments) against Stable-Baselines3
# A2C with the same number of environments, measured in the same run: medians of 3
# repeats each, then the ratio; and rlcpc on Gymnasium's own CartPole-v1
# (`gymnasium:CartPole-v1`) beside both. Outside the test suite (it installs SB3 and torch from
# PyPI into a virtual environment on first use, about 1 GB).
#
#   scripts/sb3-compare.sh            # 16 environments, 200k rlcpc / 100k SB3 steps
#   ENVS=64 scripts/sb3-compare.sh
#
# RLCPC: the rlcpc binary (default target/release/rlcpc); VENV: where SB3 lives
# (default .venv-sb3).
set -euo pipefail
cd "$(dirname "$0")/.."
ENVS=${ENVS:-16}
RLCPC=${RLCPC:-target/release/rlcpc}
VENV=${VENV:-.venv-sb3}
REPEATS=${REPEATS:-3}
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q "stable-baselines3==2.7.0"
fi
[ -x "$RLCPC" ] || cargo build --release
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
# median_sps STEPS [--set ...]: rlcpc's median env steps/s over REPEATS seeded runs.
median_sps() {
  local steps=$1 runs=() line
  shift
  for r in $(seq 1 "$REPEATS"); do
    rm -rf "$out/run"
    line=$("$RLCPC" train --quiet --out "$out/run" --set "env.num_envs=$ENVS" \
      --set run.total_steps="$steps" --set run.target_return=0 --set run.seed="$r" \
      --set run.checkpoint_every=0 --set run.checkpoint_minutes=0 "$@" | grep ' steps/s)')
    runs+=("$(sed -E 's/.*\(([0-9]+) steps\/s\).*/\1/' <<<"$line")")
  done
  echo "$(printf '%s\n' "${runs[@]}" | sort -n | sed -n "$(((REPEATS + 1) / 2))p") (runs: ${runs[*]})"
}
rl_line=$(median_sps 200000)
rl=${rl_line%% *}
echo "rlcpc cartpole, $ENVS envs: median $rl_line env steps/s"
# The same environment from Python's Gymnasium (in SB3's virtual environment), one
# process per environment (docs/environments.md).
gym_line=$(median_sps 100000 --set 'env.id="gymnasium:CartPole-v1"' --set "env.python=\"$VENV/bin/python\"")
echo "rlcpc gymnasium:CartPole-v1, $ENVS envs: median $gym_line env steps/s"
sb3=$("$VENV/bin/python" scripts/sb3-a2c.py --envs "$ENVS" --repeats "$REPEATS")
echo "sb3 a2c: $sb3"
med=$(python3 -c "import json,sys; print(round(json.loads(sys.argv[1])['median_steps_per_sec']))" "$sb3")
python3 -c "import sys; r, s = map(float, sys.argv[1:]); print(f'ratio: {r / s:.1f}x ({r:.0f} / {s:.0f} env steps/s)')" "$rl" "$med"
