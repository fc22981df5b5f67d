#!/usr/bin/env bash
# SimCLR, MoCo v2, CPC and CPC + LayerNorm on Fashion-MNIST within 30 minutes a run
# (docs/results.md, "Contrastive encoders on Fashion-MNIST in 30 minutes"): each arm's
# preset trained for a fixed number of steps that fits 30 minutes on a 2-core machine,
# then probed with every label share (1%, 10%, 100%; linear and kNN on frozen h, and for
# the whole-image encoders fine-tuning against the same network from scratch), next to
# the random-init twin and the raw pixels. Finished runs and probes are kept, and a run
# stopped part way (Ctrl-C, or SIGTERM to the script's process group) resumes from its
# checkpoint, so the same command goes on where it stopped. A run's time (.seconds) is
# its training time summed over its pieces.
#
#   scripts/fashion-views.sh DATA OUT [SEEDS] [ARMS]
#
# DATA: Fashion-MNIST's IDX files (apt-get install dataset-fashion-mnist:
# /usr/share/datasets/fashion-mnist). SEEDS default "1 2 3" (the training seed and the
# label draws' seed); ARMS default "simclr moco cpc cpc-ln". Ends with the tables.
# For a quick check of the pipeline, STEPS=20 MAX_IMAGES=6000 FINE_TUNE=20 override the
# steps of every arm, the probes' images and the fine-tuning steps.
#
# RECORDS=DIR keeps what a finished run leaves for the tables (its training time, its
# config, its three probes' JSON and the binary's version) in DIR, a folder to commit:
# OUT is lost with its machine, and a later start on a fresh OUT takes every complete
# record from DIR instead of training that run again. A run whose record lacks a probe
# is trained again (its encoder is not kept).
set -euo pipefail
data=${1:?usage: fashion-views.sh DATA OUT [SEEDS] [ARMS]}
out=${2:?usage: fashion-views.sh DATA OUT [SEEDS] [ARMS]}
seeds=${3:-1 2 3}
arms=${4:-simclr moco cpc cpc-ln}
bin=${RLCPC:-$(dirname "$0")/../target/release/rlcpc}
[[ -x $bin ]] || { echo "no rlcpc binary at $bin (cargo build --release, or set RLCPC)" >&2; exit 1; }
records=${RECORDS:-}
mkdir -p "$out" ${records:+"$records"}
shares=(1 10 100)

# A complete record (time and the three probes) stands for a finished run in OUT.
restore_record() { # ARM SEED
    local rec="$records/$1-seed$2" run="$out/$1-seed$2" s
    [[ -n $records && -f $rec/seconds ]] || return 0
    for s in "${shares[@]}"; do [[ -f $rec/probe-$s.json ]] || return 0; done
    [[ -f $run/.done ]] && return 0
    echo "== $run: taken from its record in $records"
    rm -rf "$run"
    mkdir -p "$run"
    cp "$rec/seconds" "$run/.seconds"
    for s in "${shares[@]}"; do cp "$rec/probe-$s.json" "$out/probe-$1-seed$2-$s.json"; done
    touch "$run/.done"
}

# Into the record: FILE as NAME.
save_record() { # ARM SEED FILE NAME
    [[ -n $records ]] || return 0
    mkdir -p "$records/$1-seed$2"
    cp "$3" "$records/$1-seed$2/$4"
}

# Each arm: its preset and settings. The steps fit 30 minutes at the throughput
# `rlcpc bench --trainers-only` measured on the 2-core machine (SimCLR 598, MoCo 743,
# image CPC 225 images/s), less about 15% for the kNN monitor and checkpoints. Image
# CPC's steps were re-timed after its patch encoder moved to the lean path: `cpc-ln`,
# 1,000 steps with one kNN pass, 296 images/s end to end on the idle machine
# (docs/results.md). CPC + LayerNorm takes CPC's steps, so that the two differ only in
# LayerNorm.
arm_flags() {
    case $1 in
        simclr) echo "--config simclr-fashion --set train.steps=3600 --set knn.every=400" ;;
        moco) echo "--config moco-fashion --set train.steps=4400 --set knn.every=400" ;;
        cpc) echo "--config cpc-image-fashion --set train.steps=14000 --set knn.every=1000" ;;
        cpc-ln) echo "--config cpc-image-fashion --set train.steps=14000 --set knn.every=1000 --set model.layer_norm=true" ;;
        *) echo "unknown arm '$1' (simclr, moco, cpc, cpc-ln)" >&2; return 1 ;;
    esac
}

for arm in $arms; do
    flags=$(arm_flags "$arm")
    for seed in $seeds; do
        run="$out/$arm-seed$seed"
        restore_record "$arm" "$seed"
        if [[ ! -f $run/.done ]]; then
            resume=() runflags=$flags
            if [[ -f $run/checkpoint.safetensors ]]; then
                echo "== resuming $run"
                # The run's own config.toml holds the preset; --resume takes no --config.
                runflags=${flags#--config * }
                resume=(--resume)
            else
                echo "== training $run"
                rm -rf "$run"
            fi
            # Into a file, not a pipe: Ctrl-C (or SIGINT/SIGTERM to the process group) must
            # reach rlcpc, which checkpoints and says "interrupted", with nothing between
            # it and its output that the signal would end first. The script waits (the
            # no-op trap) and then stops.
            trap ':' INT TERM
            # shellcheck disable=SC2086 # the flags are words
            "$bin" pretrain image $runflags ${STEPS:+--set train.steps=$STEPS} --data "$data" \
                --out "$run" --set train.seed="$seed" --quiet "${resume[@]}" > "$out/.pretrain.out"
            trap - INT TERM
            log=$(tail -n 3 "$out/.pretrain.out")
            echo "$log"
            if grep -q '^interrupted' <<<"$log"; then
                echo "stopped; the same command resumes $run from its checkpoint" >&2
                exit 3
            fi
            # The training time over every piece, as the run counts it.
            sed -n 's/^done after [0-9]* steps in \([0-9.]*\) s.*/\1/p' <<<"$log" \
                | awk '{printf "%d\n", $1 + 0.5}' > "$run/.seconds"
            touch "$run/.done"
            { "$bin" --version; echo "checkout $(git -C "$(dirname "$0")" rev-parse --short HEAD 2>/dev/null || echo unknown)"; } > "$run/.version"
            save_record "$arm" "$seed" "$run/.seconds" seconds
            save_record "$arm" "$seed" "$run/config.toml" config.toml
            save_record "$arm" "$seed" "$run/.version" version
        fi
        for s in "${shares[@]}"; do
            share=$s%
            p="$out/probe-$arm-seed$seed-$s.json"
            [[ -f $p ]] && continue
            extra=(--max-images "${MAX_IMAGES:-60000}" --label-seed "$seed")
            [[ $share != 100% ]] && extra+=(--labels "$share")
            case $arm in
                simclr | moco) extra+=(--fine-tune "${FINE_TUNE:-500}") ;;
                *) extra+=(--pool-grid 2) ;;
            esac
            "$bin" probe --encoder "$run/encoder.safetensors" --data "$data" "${extra[@]}" \
                --json > "$p.tmp"
            mv "$p.tmp" "$p"
            save_record "$arm" "$seed" "$p" "probe-$s.json"
            echo "   probed $share: $(basename "$p")"
        done
    done
done

python3 - "$(dirname "$0")" "$out" "$arms" "$seeds" <<'EOF'
import json, os, statistics, sys
sys.path.insert(0, sys.argv[1])
from tstats import interval
out, arms, seeds = sys.argv[2], sys.argv[3].split(), sys.argv[4].split()

def load(arm, seed, share):
    return json.load(open(f"{out}/probe-{arm}-seed{seed}-{share}.json"))

def linear(j, prefix):
    return next(r["test_acc"] for r in j["rows"] if r["features"].startswith(prefix))

def knn(j, prefix):
    return next((k["knn_test_acc"] for k in j.get("knn") or [] if k["features"].startswith(prefix)), None)

def ci(d):
    m, h = interval(d)
    if len(d) < 2:
        return f"{100*m:+.1f}"
    return f"{100*(m):+.1f} [{100*(m-h):+.1f}, {100*(m+h):+.1f}]"

def ms(v):
    v = [x for x in v if x is not None]
    if not v:
        return "—"
    sd = statistics.stdev(v) if len(v) > 1 else 0.0
    return f"{100*statistics.mean(v):.1f} ± {100*sd:.1f}"

own = {"simclr": "simclr", "moco": "moco", "cpc": "cpc", "cpc-ln": "cpc"}
print(f"\nAll labels (100%), test accuracy in %, mean ± sd over seeds {' '.join(seeds)}; "
      "differences paired by seed with 95% t intervals:")
print("| arm | minutes | linear | kNN | random-init linear | raw linear | linear − random | linear − raw | kNN − random | kNN − raw |")
print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
for arm in arms:
    js = [load(arm, s, "100") for s in seeds]
    mins = [int(open(f"{out}/{arm}-seed{s}/.seconds").read()) / 60 for s in seeds]
    lin = [linear(j, own[arm]) for j in js]
    rnd = [linear(j, "random-init") for j in js]
    raw = [linear(j, "raw pixels") for j in js]
    kn = [knn(j, own[arm]) for j in js]
    krnd = [knn(j, "random-init") for j in js]
    kraw = [knn(j, "raw pixels") for j in js]
    has_knn = all(x is not None for x in kn + krnd + kraw)
    print(f"| {arm} | {statistics.mean(mins):.1f} | {ms(lin)} | {ms(kn)} | {ms(rnd)} | {ms(raw)} | "
          f"{ci([a-b for a, b in zip(lin, rnd)])} | {ci([a-b for a, b in zip(lin, raw)])} | "
          f"{ci([a-b for a, b in zip(kn, krnd)]) if has_knn else '—'} | {ci([a-b for a, b in zip(kn, kraw)]) if has_knn else '—'} |")

print("\nLabel efficiency: test accuracy in % (frozen linear; fine-tuned " + os.environ.get("FINE_TUNE", "500") + " Adam steps of 128 "
      "labelled images, from the encoder and from scratch), mean ± sd; fine-tuned − scratch paired by seed:")
print("| labels | arm | frozen linear | random-init linear | raw linear | fine-tuned | from scratch | fine-tuned − scratch |")
print("| --- | --- | --- | --- | --- | --- | --- | --- |")
for share in ["1", "10", "100"]:
    for arm in arms:
        js = [load(arm, s, share) for s in seeds]
        lin = [linear(j, own[arm]) for j in js]
        rnd = [linear(j, "random-init") for j in js]
        raw = [linear(j, "raw pixels") for j in js]
        ft = [j["fine_tune"]["pretrained"]["test_acc"] if j.get("fine_tune") else None for j in js]
        sc = [j["fine_tune"]["scratch"]["test_acc"] if j.get("fine_tune") else None for j in js]
        d = ci([a-b for a, b in zip(ft, sc)]) if None not in ft else "—"
        print(f"| {share}% | {arm} | {ms(lin)} | {ms(rnd)} | {ms(raw)} | {ms(ft)} | {ms(sc)} | {d} |")
EOF
