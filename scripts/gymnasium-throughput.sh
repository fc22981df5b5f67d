#!/usr/bin/env bash
# End-to-end env steps/s of Python environments, one Python process per environment
# (env.vector = "none", the bridge before 2026-12-07) against one per actor worker with
# a gymnasium.vector env and shared memory ("sync"; "async" too where it is asked for),
# runs interleaved (none, sync, none, sync, ...) so that both see the same machine.
# Prints every run, then the medians, with the time per update split into collecting
# (the actors and their environments) and learning, to say which side limits.
#
#   VENV=.venv-gymnasium scripts/gymnasium-throughput.sh          # 3 runs per arm
#   REPS=5 MODES="none sync async" scripts/gymnasium-throughput.sh
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv-gymnasium}
REPS=${REPS:-3}
MODES=${MODES:-none sync}
RLCPC=${RLCPC:-target/release/rlcpc}
[[ -x $VENV/bin/python ]] || { echo "no Python at $VENV/bin/python: run scripts/gymnasium-envs.sh first, or set VENV" >&2; exit 2; }
[[ -x $RLCPC ]] || cargo build --release
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
# name | steps | settings
cases=(
  "gymnasium:CartPole-v1 (default preset)|200000|--set env.id=\"gymnasium:CartPole-v1\""
  "MiniGrid-MemoryS7 (minigrid-memory)|100000|--config minigrid-memory"
  "ALE/Pong-v5 (atari)|20000|--config atari"
)
set -f # the settings hold brackets
printf '%s\n' "case | env.vector | run | env steps/s | ms/update: collect (of which env) | learner (forward+loss+aux+backward+optimiser)"
declare -A rates
for c in "${cases[@]}"; do
  IFS='|' read -r name steps settings <<<"$c"
  for r in $(seq 1 "$REPS"); do
    for mode in $MODES; do
      # shellcheck disable=SC2086 # the settings are words
      log=$("$RLCPC" train --quiet --out "$out/$RANDOM$RANDOM" $settings \
        --set "env.python=\"$VENV/bin/python\"" --set "env.vector=\"$mode\"" \
        --set run.total_steps="$steps" --set run.target_return=0 2>&1)
      rate=$(grep -o '([0-9]* steps/s)' <<<"$log" | tr -dc '0-9')
      ms=$(grep 'ms/update' <<<"$log" | tail -1)
      collect=$(sed -n 's/.*collect \([0-9.]*\) (env \([0-9.]*\)).*/\1 (\2)/p' <<<"$ms")
      learn=$(awk '{for(i=1;i<=NF;i++){if($i=="forward"||$i=="backward"||$i=="optimiser"||$i=="aux"||$i=="loss")s+=$(i+1)}} END{printf "%.2f", s}' <<<"$ms")
      echo "$name | $mode | $r | $rate | $collect | $learn"
      rates["$name|$mode"]+="$rate "
    done
  done
done
# The ceiling: the environments alone, stepped by the bridge's own vector env in one
# Python process with random actions (no rlcpc, no pipe), per core.
raw() {
  "$VENV/bin/python" - "$@" <<'PY'
import importlib.util, json, sys, time
import numpy as np, gymnasium
spec = json.loads(sys.argv[1])
if spec["id"].startswith("ALE/"):
    import ale_py
    gymnasium.register_envs(ale_py)
m = importlib.util.spec_from_file_location("bridge", "envs/src/gymnasium/bridge.py")
bridge = importlib.util.module_from_spec(m)
m.loader.exec_module(bridge)
n = 8
venv = bridge.ale_vector(spec, n, np)
if venv is None:
    venv = gymnasium.vector.SyncVectorEnv(
        [lambda: bridge.make_env(spec, np, gymnasium) for _ in range(n)], copy=False, autoreset_mode="SameStep"
    )
venv.reset(seed=list(range(n)) if not hasattr(venv, "ale") else np.arange(n))
rng = np.random.default_rng(0)
k = venv.single_action_space.n
steps, t = 0, time.perf_counter()
while time.perf_counter() - t < 10:
    venv.step(rng.integers(0, k, n))
    steps += n
print(int(steps / (time.perf_counter() - t)))
PY
}
echo
echo "the environments alone (8 in one vector, one process, random actions, 10 s): env steps/s"
echo "gymnasium:CartPole-v1 | $(raw '{"id": "CartPole-v1"}')"
echo "MiniGrid-MemoryS7 | $(raw '{"id": "minigrid:MiniGrid-MemoryS7-v0", "wrappers": ["minigrid"]}')"
echo "ALE/Pong-v5 (ale-py's vector env) | $(raw '{"id": "ALE/Pong-v5", "wrappers": ["atari"], "max_episode_steps": 27000}')"
echo
echo "case | env.vector | median env steps/s | runs"
for c in "${cases[@]}"; do
  name=${c%%|*}
  for mode in $MODES; do
    runs=${rates["$name|$mode"]}
    med=$(tr ' ' '\n' <<<"$runs" | grep . | sort -n | awk '{a[NR]=$1} END{print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}')
    echo "$name | $mode | $med | ${runs% }"
  done
done
