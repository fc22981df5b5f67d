#!/usr/bin/env bash
# Cost per environment step of the agent's auxiliary losses on a Lab RGB task:
# `rlcpc train` with --aux none, cpc and curl, the same budget each, alternating, REPEATS
# times; prints every run's env steps/s and the median per auxiliary.
#   scripts/aux-cost.sh [BIN] [STEPS] [REPEATS]
# Sync mode, 16 environments of lab/explore_goal_locations with 32x32 RGB views, the conv
# encoder and the LSTM core (the preset's settings otherwise).
set -euo pipefail
bin=${1:-target/release/rlcpc}
steps=${2:-40000}
repeats=${3:-3}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
declare -A runs
for r in $(seq "$repeats"); do
  for aux in none cpc curl; do
    line=$("$bin" train --quiet --config lab-explore_goal_locations --aux "$aux" --out "$tmp/$aux-$r" \
      --set 'env.options.obs="rgb"' --set env.options.width=32 --set env.options.height=32 \
      --set 'model.encoder="conv"' --set env.num_envs=16 --set run.workers=2 \
      --set run.total_steps="$steps" --set run.mode='"sync"' 2>&1 | grep -o '([0-9]* steps/s)' | tr -dc '0-9')
    runs[$aux]="${runs[$aux]:-} $line"
    echo "run $r, aux $aux: $line env steps/s"
  done
done
for aux in none cpc curl; do
  med=$(echo ${runs[$aux]} | tr ' ' '\n' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
  echo "aux $aux: median $med env steps/s (runs:${runs[$aux]})"
done
