#!/usr/bin/env bash
# Keep a long study's finished runs when its run directory is lost (a new machine, a
# cleaned `runs/`): save the small records of every finished run into a folder that is
# committed, and restore them into a fresh study directory before resuming.
#
#   scripts/study-records.sh save    runs/study-NAME docs/studies/NAME/records
#   scripts/study-records.sh restore docs/studies/NAME/records runs/study-NAME
#
# A record is what `rlcpc study` reads from a finished run: `config.toml` (checked
# against the plan), `metrics.jsonl` (curves and metrics) and `result.json` (which marks
# the run finished, so a resumed study skips it), plus the pinned `plan.json`. Checkpoints
# are not kept: a run that had not finished when the directory was lost starts again.
set -euo pipefail
usage() { echo "usage: $0 save STUDY_DIR RECORDS | restore RECORDS STUDY_DIR" >&2; exit 2; }
[ $# -eq 3 ] || usage
mode=$1; from=$2; to=$3
case $mode in save|restore) ;; *) usage ;; esac
[ -f "$from/plan.json" ] || { echo "error: '$from' has no plan.json: not a study directory or records" >&2; exit 1; }
mkdir -p "$to"
if [ "$mode" = restore ] && [ -f "$to/plan.json" ] && ! cmp -s "$from/plan.json" "$to/plan.json"; then
    echo "error: '$to/plan.json' pins another plan than '$from/plan.json'; not restoring" >&2
    exit 1
fi
cp "$from/plan.json" "$to/plan.json"
n=0
while IFS= read -r -d '' result; do
    run=$(dirname "${result#"$from"/}")
    if [ "$mode" = restore ] && [ -f "$to/$run/result.json" ]; then
        continue
    fi
    mkdir -p "$to/$run"
    for f in config.toml metrics.jsonl result.json; do
        [ -f "$from/$run/$f" ] || { echo "error: '$from/$run' has result.json but no $f" >&2; exit 1; }
        cp "$from/$run/$f" "$to/$run/$f"
    done
    n=$((n + 1))
done < <(find "$from" -path "$from/replaced" -prune -o -name result.json -print0 | sort -z)
echo "$mode: $n finished run(s) from '$from' to '$to'"
