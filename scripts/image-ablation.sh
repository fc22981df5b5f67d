#!/bin/sh
# CPC-v2's ablation on an image set at a fixed number of steps: the paper's CPC, then
# LayerNorm, LayerNorm + patch augmentation, LayerNorm + four directions; each run is
# probed (class from 2x2-pooled context vectors, next to a random-init twin and raw pixels).
# Usage: scripts/image-ablation.sh DATA OUT [STEPS] [MAX_IMAGES]
#   scripts/image-ablation.sh /usr/share/datasets/fashion-mnist runs/abl 1500 3000
set -eu
DATA=${1:?usage: scripts/image-ablation.sh DATA OUT [STEPS] [MAX_IMAGES]}
OUT=${2:?usage: scripts/image-ablation.sh DATA OUT [STEPS] [MAX_IMAGES]}
STEPS=${3:-1500}
MAX=${4:-3000}
RLCPC=${RLCPC:-rlcpc}
mkdir -p "$OUT"
run() {
  name=$1; shift
  "$RLCPC" cpc image --config cpc-image-fashion --data "$DATA" --out "$OUT/$name" --quiet \
    --set train.steps="$STEPS" "$@" > "$OUT/$name.log" 2>&1
  "$RLCPC" probe --encoder "$OUT/$name/encoder.safetensors" --data "$DATA" \
    --max-images "$MAX" --iters 300 --pool-grid 2 > "$OUT/$name.probe" 2>&1
  tail -n 1 "$OUT/$name.log" | tr '\r' '\n' | tail -n 1
  grep -E '^(cpc|random|raw)' "$OUT/$name.probe"
}
run base
run ln --set model.layer_norm=true
run ln-aug --set model.layer_norm=true --set augment.crop=2 --set augment.flip=true
run ln-dirs --set model.layer_norm=true --set 'cpc.directions=["down","up","right","left"]'
