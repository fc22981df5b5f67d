#!/usr/bin/env bash
# Audio CPC's negatives against MFCC on a many-speaker corpus (docs/results.md, "Audio CPC
# against MFCC on 116 speakers"): one CPC run per `cpc.negatives` arm and seed, each probed
# on speaker and digit with every feature set pooled by the mean and by mean + std; the
# random-init twin and MFCCs (the same for every run: same split, fixed twin seed) once per
# target. Finished runs and probes are kept, so the same command resumes.
#
#   scripts/audio-negatives.sh DATA OUT [STEPS] [SEEDS] [ARMS]
#
# DATA: a corpus with speaker and digit labels (scripts/speakers.sh DATA writes one).
# STEPS: training steps per run (default 5000); SEEDS default "1 2 3"; ARMS default
# "sequence speaker batch both". Ends with the table of mean test accuracies (± the
# standard deviation over seeds) and each arm's better pooling (by its mean over seeds)
# minus MFCC's better pooling, with a 95% t interval over seeds.
set -euo pipefail
data=${1:?usage: audio-negatives.sh DATA OUT [STEPS] [SEEDS] [ARMS]}
out=${2:?usage: audio-negatives.sh DATA OUT [STEPS] [SEEDS] [ARMS]}
steps=${3:-5000}
seeds=${4:-1 2 3}
arms=${5:-sequence speaker batch both}
bin=${RLCPC:-$(dirname "$0")/../target/release/rlcpc}
[[ -x $bin ]] || { echo "no rlcpc binary at $bin (cargo build --release, or set RLCPC)" >&2; exit 1; }
mkdir -p "$out"
for arm in $arms; do
    for seed in $seeds; do
        run="$out/$arm-seed$seed"
        # A run is finished when its marker is there (encoder.safetensors is also written
        # at checkpoints, so an interrupted run has one).
        if [[ ! -f $run/.done ]]; then
            echo "== training $run ($steps steps)"
            rm -rf "$run"
            # The same batches in every arm: 4 speakers x 4 windows; waveforms standardised
            # (mixed sources; without it runs on non-FSDD speech stayed at chance).
            "$bin" pretrain audio --config cpc-audio-fsdd --data "$data" --out "$run" \
                --set cpc.negatives="\"$arm\"" --set cpc.windows_per_speaker=4 \
                --set model.normalize=true --set train.steps="$steps" --set train.seed="$seed" \
                --set train.log_every=100 | tail -n 3
            touch "$run/.done"
        fi
        for target in speaker digit; do
            p="$out/probe-$target-$arm-seed$seed.json"
            base="$out/probe-$target-baselines.json"
            [[ -f $p && -f $base ]] && continue
            # The baselines (random-init twin, MFCC) once per target: the first probe's.
            flags=(--no-baselines)
            [[ -f $base ]] || flags=()
            "$bin" probe --encoder "$run/encoder.safetensors" --data "$data" --target "$target" \
                "${flags[@]}" --json > "$p.tmp"
            [[ -f $base ]] || cp "$p.tmp" "$base"
            mv "$p.tmp" "$p"
            echo "   probed $target: $(basename "$p")"
        done
    done
done

python3 - "$(dirname "$0")" "$out" "$arms" "$seeds" <<'EOF'
import json, statistics, sys
sys.path.insert(0, sys.argv[1])
from tstats import interval
out, arms, seeds = sys.argv[2], sys.argv[3].split(), sys.argv[4].split()

def rows(path):
    return {r["features"]: r["test_acc"] for r in json.load(open(path))["rows"]}

def pick(r, prefix, pool):
    hits = [v for k, v in r.items() if k.startswith(prefix) and k.endswith(f", {pool} over frames")]
    return hits[0]

for target in ["speaker", "digit"]:
    base = rows(f"{out}/probe-{target}-baselines.json")
    mfcc = {p: pick(base, "MFCC", p) for p in ["mean", "mean+std"]}
    rand = {p: pick(base, "random-init", p) for p in ["mean", "mean+std"]}
    best = max(mfcc.values())
    print(f"\n{target}: MFCC mean {100*mfcc['mean']:.1f}%, mean+std {100*mfcc['mean+std']:.1f}%; "
          f"random-init mean {100*rand['mean']:.1f}%, mean+std {100*rand['mean+std']:.1f}%")
    print(f"{'negatives':<10} {'mean':>16} {'mean+std':>16}   {'best CPC - best MFCC (95% CI)':>32}   per seed")
    for arm in arms:
        acc = {p: [] for p in ["mean", "mean+std"]}
        for s in seeds:
            r = rows(f"{out}/probe-{target}-{arm}-seed{s}.json")
            for p in acc:
                acc[p].append(pick(r, "cpc", p))
        # One pooling per arm (the better mean over seeds), as MFCC's is one.
        pool = max(acc, key=lambda p: statistics.mean(acc[p]))
        d = [a - best for a in acc[pool]]
        m, h = interval(d)
        cells = [f"{100*statistics.mean(v):.1f}% ± {100*(statistics.stdev(v) if len(v) > 1 else 0):.1f}" for v in acc.values()]
        per = " / ".join(f"{100*a:.1f}" for a in acc[pool])
        print(f"{arm:<10} {cells[0]:>16} {cells[1]:>16}   {100*m:+8.1f} [{100*(m-h):+.1f}, {100*(m+h):+.1f}] points ({pool})   {per}")
EOF
