#!/usr/bin/env bash
# Figures of distributed actors over MPI for docs/results.md (a build with
# `cargo build --release --features mpi`; OpenMPI):
#  1. env steps/s of two presets with 1, 2 and 4 actor ranks (mpirun -np 2, 3, 5; 4
#     workers in all) against the threaded run with the same 4 workers, seeds 1-3. On a
#     small machine the ranks oversubscribe its cores: the figures say what MPI costs,
#     not how it scales.
#  2. bytes per parameter broadcast and per unroll of every agent preset (one sync
#     update on one actor rank), per env step, and from them how many actor hosts one
#     learner can feed on 10 and 100 Gbit/s links.
#  3. a preset with large unrolls (Lab), through MPI on loopback.
#  4. data-parallel learners (--learners 2 and 4, on threads or actor ranks) against one
#     learner: env steps/s and final mean return, seeds 1-3, and bytes per all-reduce.
# SECTIONS=4 (or "1 3") runs only those sections.
# Usage: scripts/mpi-bench.sh [OUT]   (BIN=path/to/rlcpc to use another binary)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-target/release/rlcpc}
OUT=${1:-runs/mpi-bench}
mkdir -p "$OUT"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
MPIRUN=(mpirun --oversubscribe)

steps_per_sec() { sed -nE 's/.*\(([0-9]+) steps\/s\).*/\1/p' | head -n 1; }

SECTIONS=${SECTIONS:-1 2 3 4}
want() { [[ " $SECTIONS " == *" $1 "* ]]; }

if want 1; then
echo "# 1. throughput: median env steps/s over seeds 1-3 (4 workers)"
printf '%-20s %10s %10s %10s %10s\n' preset threaded "1 rank" "2 ranks" "4 ranks"
for spec in cartpole:500000 cartpole-lstm-cpc:100000; do
  config=${spec%%:*} steps=${spec##*:}
  common=(train --config "$config" --quiet --set run.workers=4 --set run.total_steps="$steps" --set run.target_return=0)
  declare -A runs=()
  for seed in 1 2 3; do
    runs[thr]+="$("$BIN" "${common[@]}" --seed "$seed" --out "$OUT/$config-thr-s$seed" | steps_per_sec) "
    for np in 2 3 5; do
      runs[$np]+="$("${MPIRUN[@]}" -np "$np" "$BIN" "${common[@]}" --seed "$seed" --distributed --out "$OUT/$config-np$np-s$seed" | steps_per_sec) "
    done
  done
  med() { tr ' ' '\n' | grep . | sort -n | sed -n 2p; }
  printf '%-20s %10s %10s %10s %10s   (seeds: threaded %s| np2 %s| np3 %s| np5 %s)\n' "$config" \
    "$(med <<<"${runs[thr]}")" "$(med <<<"${runs[2]}")" "$(med <<<"${runs[3]}")" "$(med <<<"${runs[5]}")" \
    "${runs[thr]}" "${runs[2]}" "${runs[3]}" "${runs[5]}"
  unset runs
done
fi

if want 2; then
echo
echo "# 2. traffic per preset (one sync update, all workers on one actor rank)"
printf '%-28s %6s %10s %10s %9s %9s %9s %9s\n' preset "T*B" "bcast B" "unroll B" "in B/st" "out B/st" "10G" "100G"
for p in cartpole cartpole-lstm-cpc cartpole-masked tmaze popgym lab-explore_goal_locations lab-watermaze lab-seekavoid_arena lab-keys_doors_puzzle lab-lasertag; do
  show=$("$BIN" config show "$p")
  t=$(sed -nE 's/^unroll = ([0-9]+)/\1/p' <<<"$show" | head -n 1)
  b=$(sed -nE 's/^num_envs = ([0-9]+)/\1/p' <<<"$show" | head -n 1)
  line=$("${MPIRUN[@]}" -np 2 "$BIN" train --config "$p" --quiet --distributed --set 'run.mode="sync"' \
    --set run.total_steps=1 --out "$OUT/traffic-$p" | grep '^mpi:')
  bcast=$(sed -nE 's/.* ([0-9]+) bytes per parameter broadcast.*/\1/p' <<<"$line")
  unroll=$(sed -nE 's/.* ([0-9]+) bytes per rank.s unroll.*/\1/p' <<<"$line")
  # Hosts one learner can feed when each actor host makes as many env steps per second
  # as this machine's threaded run of the preset (HOST_SPS, measured below), both ways of
  # the link: in, unrolls; out, one broadcast per host per update of T*B steps.
  sps=$("$BIN" train --config "$p" --quiet --set 'run.mode="sync"' --set run.total_steps=$((20 * t * b)) \
    --set run.target_return=0 --out "$OUT/host-$p" | steps_per_sec)
  python3 - "$p" "$t" "$b" "$bcast" "$unroll" "$sps" <<'PY'
import sys
p, t, b, bcast, unroll, sps = sys.argv[1], *map(float, sys.argv[2:])
steps = t * b
per_step_in = unroll / steps          # bytes into the learner per env step
per_step_out = bcast / steps          # bytes out per env step and host (one broadcast per update)
need = sps * max(per_step_in, per_step_out)  # bytes/s per host on the busier direction
hosts = lambda gbit: gbit * 1e9 / 8 / need
print(
    f"{p:<28} {steps:6.0f} {bcast:10.0f} {unroll:10.0f} {per_step_in:9.1f} {per_step_out:9.1f} "
    f"{hosts(10):9.0f} {hosts(100):9.0f}   (host: {sps:.0f} env steps/s; limited by {'out' if per_step_out > per_step_in else 'in'})"
)
PY
done
fi

if want 3; then
echo
echo "# 3. a preset with large unrolls (Lab grid observations), seed 1, 200k env steps, sync"
for np in thr 2 3; do
  common=(train --config lab-watermaze --quiet --seed 1 --set 'run.mode="sync"' --set run.total_steps=200000 --set run.target_return=0)
  if [[ $np == thr ]]; then
    log=$("$BIN" "${common[@]}" --out "$OUT/lab-thr")
  else
    log=$("${MPIRUN[@]}" -np "$np" "$BIN" "${common[@]}" --distributed --out "$OUT/lab-np$np")
  fi
  sps=$(steps_per_sec <<<"$log")
  secs=$(sed -nE 's/.* in ([0-9.]+) s \(.*/\1/p' <<<"$log" | head -n 1)
  mpi=$(grep '^mpi:' <<<"$log" || true)
  python3 - "$np" "$sps" "$secs" "$mpi" <<'PY'
import re, sys
np_, sps, secs, mpi = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
if not mpi:
    print(f"threaded      {sps:9.0f} env steps/s")
else:
    n = [float(x) for x in re.findall(r"([0-9]+) (?:bytes|parameter broadcasts|received)", mpi)]
    bcast, nb, unroll, nu = n[0], n[1], n[2], n[3]
    ranks = int(np_) - 1
    moved = bcast * nb * ranks + unroll * nu
    print(f"np {np_} ({ranks} actor ranks) {sps:9.0f} env steps/s; {moved / secs / 1e6:.0f} MB/s through MPI on loopback ({mpi})")
PY
done
fi

if want 4; then
echo
echo "# 4. data-parallel learners: median env steps/s and final mean return over seeds 1-3 (4 workers, sync)"
# Arms: threaded (one learner); --learners 2 with the workers on the learners' threads
# (-np 2); --learners 2 with one actor rank each (-np 4); --learners 4 (-np 4).
printf '%-20s %-24s %10s %10s  %s\n' preset arm "steps/s" "return" "(per seed: steps/s return)"
for spec in cartpole:300000 cartpole-lstm-cpc:100000; do
  config=${spec%%:*} steps=${spec##*:}
  common=(train --config "$config" --quiet --set run.workers=4 --set run.total_steps="$steps" --set run.target_return=0)
  for arm in "threaded" "2:2" "4:2" "4:4"; do
    per=""
    for seed in 1 2 3; do
      if [[ $arm == threaded ]]; then
        log=$("$BIN" "${common[@]}" --seed "$seed" --out "$OUT/dp-$config-thr-s$seed")
      else
        np=${arm%%:*} l=${arm##*:}
        log=$("${MPIRUN[@]}" -np "$np" "$BIN" "${common[@]}" --seed "$seed" --distributed --learners "$l" \
          --out "$OUT/dp-$config-np$np-l$l-s$seed")
      fi
      ret=$(sed -nE 's/.*mean return \(last 100 episodes\): ([0-9.na/-]+).*/\1/p' <<<"$log" | head -n 1)
      per+="$(steps_per_sec <<<"$log"):$ret "
      [[ $seed == 1 && $arm != threaded ]] && grep '^mpi:' <<<"$log" | sed 's/^/    /' >&2
    done
    python3 - "$config" "$arm" "$per" <<'PY'
import statistics, sys
config, arm, per = sys.argv[1], sys.argv[2], sys.argv[3].split()
sps = [float(p.split(":")[0]) for p in per]
ret = [float(p.split(":")[1]) for p in per]
name = "threaded, 1 learner" if arm == "threaded" else f"-np {arm.split(':')[0]} --learners {arm.split(':')[1]}"
print(f"{config:<20} {name:<24} {statistics.median(sps):10.0f} {statistics.median(ret):10.1f}  ({' '.join(per)})")
PY
  done
done
fi
