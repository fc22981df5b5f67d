#!/usr/bin/env bash
# The POPGym study (docs/results.md, "The POPGym study"): where does an auxiliary head
# help an LSTM agent? Arms --aux none / cpc / cpca on POPGym tasks, the `popgym` preset,
# each arm with the same small tuning budget, compared at one shared setting (the
# preset's) and at each arm's best setting. Rerunnable and resumable: a condition whose
# OUT/.../summary.txt exists is not run again.
#
#   scripts/popgym-study.sh                      # the defaults below
#   TASKS="RepeatFirstEasy" SEEDS=1-3 STEPS=200000 scripts/popgym-study.sh
#
# 1. Tuning: for each arm, every (lr, ent_coef) of LRS x ENTS on TUNE_TASK with
#    TUNE_SEEDS (seeds the comparison never uses); the best mean MMER wins.
# 2. Comparison: every task x arm with SEEDS, at the shared setting and at the arm's best.
# 3. Plots (mean ± s.e. over seeds) and final-performance tables (mean, 95% CI) per task.
# MMER: the maximum over training of the logged mean episodic return (last 100
# episodes), averaged over seeds, as POPGym reports it.
set -euo pipefail
cd "$(dirname "$0")/.."

RLCPC=${RLCPC:-target/release/rlcpc}
OUT=${OUT:-runs/popgym-study}
STEPS=${STEPS:-500000}
SEEDS=${SEEDS:-1-5}
TUNE_SEEDS=${TUNE_SEEDS:-101,102}
TUNE_TASK=${TUNE_TASK:-RepeatPreviousEasy}
TASKS=${TASKS:-"RepeatFirstEasy RepeatPreviousEasy AutoencodeEasy CountRecallEasy HigherLowerEasy MultiarmedBanditEasy ConcentrationEasy BattleshipEasy MineSweeperEasy LabyrinthEscapeEasy LabyrinthExploreEasy PositionOnlyCartPoleEasy VelocityOnlyCartPoleEasy NoisyPositionOnlyCartPoleEasy"}
ARMS=${ARMS:-"none cpc cpca"}
LRS=${LRS:-"1e-3 3e-3"}
ENTS=${ENTS:-"0.01 0.0"}
SHARED=${SHARED:-"1e-3 0.01"}
JOBS=${JOBS:-2}

[ -x "$RLCPC" ] || { echo "no $RLCPC: cargo build --release first (or set RLCPC)" >&2; exit 1; }
mkdir -p "$OUT"
start=$(date +%s)

# One condition: ARM TASK LR ENT SEEDS DIR.
condition() {
  local arm=$1 task=$2 lr=$3 ent=$4 seeds=$5 dir=$6
  [ -f "$dir/summary.txt" ] && return 0
  "$RLCPC" train --config popgym --aux "$arm" --seeds "$seeds" --out "$dir" --quiet \
    --set "env.id=\"popgym/$task\"" --set "run.total_steps=$STEPS" \
    --set "optim.lr=$lr" --set "algo.ent_coef=$ent" > "$dir.log" 2>&1 \
    || { echo "FAILED: $dir (see $dir.log)" >&2; return 1; }
  echo "$(date +%T) $dir: $(tail -1 "$dir/summary.txt" | sed 's/ · solved.*//')"
}
export -f condition
export RLCPC STEPS

# Mean MMER of a condition, from its summary's last line.
mmer() { tail -1 "$1/summary.txt" | sed -n 's/.*MMER \(-\{0,1\}[0-9.]*\) .*/\1/p'; }

echo "== 1. tuning on $TUNE_TASK, seeds $TUNE_SEEDS"
jobs_file=$(mktemp)
for arm in $ARMS; do for lr in $LRS; do for ent in $ENTS; do
  d="$OUT/tune/$arm/lr$lr-ent$ent"; mkdir -p "$(dirname "$d")"
  echo "$arm $TUNE_TASK $lr $ent $TUNE_SEEDS $d" >> "$jobs_file"
done; done; done
xargs -P "$JOBS" -L 1 bash -c 'condition "$@"' _ < "$jobs_file"
declare -A best
for arm in $ARMS; do
  top=""; topv=-1e9
  for lr in $LRS; do for ent in $ENTS; do
    v=$(mmer "$OUT/tune/$arm/lr$lr-ent$ent")
    if awk -v a="$v" -v b="$topv" 'BEGIN { exit !(a > b) }'; then top="$lr $ent"; topv=$v; fi
  done; done
  best[$arm]=$top
  echo "best setting of $arm: lr, ent_coef = $top (MMER $topv)" | tee -a "$OUT/tuning.txt"
done

echo "== 2. comparison, seeds $SEEDS, $STEPS steps"
: > "$jobs_file"
for task in $TASKS; do for arm in $ARMS; do
  mkdir -p "$OUT/shared/$task" "$OUT/best/$task"
  echo "$arm $task $SHARED $SEEDS $OUT/shared/$task/$arm" >> "$jobs_file"
  if [ "${best[$arm]}" != "$SHARED" ]; then
    echo "$arm $task ${best[$arm]} $SEEDS $OUT/best/$task/$arm" >> "$jobs_file"
  fi
done; done
xargs -P "$JOBS" -L 1 bash -c 'condition "$@"' _ < "$jobs_file"
rm -f "$jobs_file"
for task in $TASKS; do for arm in $ARMS; do
  [ "${best[$arm]}" = "$SHARED" ] && ln -sfn "../../shared/$task/$arm" "$OUT/best/$task/$arm"
done; done

echo "== 3. plots and tables"
mkdir -p "$OUT/plots"
labels=$(echo $ARMS | tr ' ' ',')
for setting in shared best; do
  for task in $TASKS; do
    dirs=(); for arm in $ARMS; do dirs+=("$OUT/$setting/$task/$arm"); done
    "$RLCPC" plot "${dirs[@]}" --label "$labels" --smooth 5 \
      --out "$OUT/plots/$task-$setting.png" --table "$OUT/plots/$task-$setting.txt" > /dev/null
    { echo "## $task ($setting setting)"; cat "$OUT/plots/$task-$setting.txt"; echo; } >> "$OUT/tables-$setting.md.tmp"
  done
  mv "$OUT/tables-$setting.md.tmp" "$OUT/tables-$setting.md"
done
echo "== 4. each head against none: MMER difference, Welch 95% CI"
# Per-seed MMERs are column 4 of the seed rows of a condition's summary.txt.
seeds_mmer() { awk 'NR > 1 && $1 ~ /^[0-9]+$/ { print $4 }' "$1/summary.txt"; }
for setting in shared best; do
  {
    echo "| task | head | MMER head − none | 95% CI | verdict |"
    echo "| --- | --- | --- | --- | --- |"
    for task in $TASKS; do for arm in $ARMS; do
      [ "$arm" = none ] && continue
      paste -sd' ' <(seeds_mmer "$OUT/$setting/$task/none") <(seeds_mmer "$OUT/$setting/$task/$arm") \
        | awk -v task="$task" -v arm="$arm" '
          BEGIN { split("12.706 4.303 3.182 2.776 2.571 2.447 2.365 2.306 2.262 2.228 2.201 2.179 2.160 2.145 2.131 2.120 2.110 2.101 2.093 2.086", T, " ") }
          NR == 1 { n1 = split($0, a, " ") } NR == 2 { n2 = split($0, b, " ") }
          END {
            for (i = 1; i <= n1; i++) m1 += a[i] / n1; for (i = 1; i <= n2; i++) m2 += b[i] / n2
            for (i = 1; i <= n1; i++) v1 += (a[i] - m1)^2 / (n1 - 1); for (i = 1; i <= n2; i++) v2 += (b[i] - m2)^2 / (n2 - 1)
            se2 = v1 / n1 + v2 / n2; d = m2 - m1
            df = (se2 > 0) ? int(se2^2 / ((v1/n1)^2/(n1-1) + (v2/n2)^2/(n2-1))) : 30
            if (df < 1) df = 1; t = (df <= 20) ? T[df] : 1.96; h = t * sqrt(se2)
            v = (d - h > 0) ? "helps" : ((d + h < 0) ? "hurts" : "no difference")
            printf "| %s | %s | %+.4f | [%+.4f, %+.4f] | %s |\n", task, arm, d, d - h, d + h, v
          }'
    done; done
  } > "$OUT/differences-$setting.md"
done
secs=$(( $(date +%s) - start ))
echo "compute: $secs s of wall-clock time on $(nproc) cores, $JOBS jobs at a time ($(date -u +%F))" | tee -a "$OUT/time.txt"
echo "tables: $OUT/tables-{shared,best}.md, $OUT/differences-{shared,best}.md; plots: $OUT/plots/"
