#!/usr/bin/env bash
# Seeded commands whose printed figures and written tensors must not change across a
# refactor. Run it with the binary before and after, then compare the two folders:
#
#   scripts/same-figures.sh OLD_BIN /tmp/before path/to/fsdd/recordings [FASHION]
#   scripts/same-figures.sh target/release/rlcpc /tmp/after path/to/fsdd/recordings [FASHION]
#   diff <(sed -E 's/[0-9.]+ s\b/T s/g' /tmp/before/probe_audio.out) <(sed -E 's/[0-9.]+ s\b/T s/g' /tmp/after/probe_audio.out)
#
# (times and samples per second differ run to run; everything else should not).
# FSDD is optional: without the third argument the audio commands are skipped; so is
# Fashion-MNIST (FASHION: its IDX files) for the image trainers and the image probe. The
# trainers are called as `rlcpc cpc ...`, the alias older binaries also know.
set -u
B=$(realpath "$1"); O=$2; FS=${3:-}; FM=${4:-}
rm -rf "$O"; mkdir -p "$O"; cd "$O" || exit 1
run() { name=$1; shift; "$B" "$@" > "$name.out" 2> "$name.err"; echo "$name rc=$?" >> rc.txt; }
run train_tmaze train --config tmaze --aux cpc --seed 3 --set run.total_steps=20000 --out tr_tmaze --quiet
run train_cp train --config cartpole --seed 2 --set run.total_steps=20000 --out tr_cp --quiet
run eval eval --checkpoint tr_tmaze --episodes 20 --seed 5
run export export-encoder --checkpoint tr_tmaze --out enc_tmaze.safetensors
run record record --env TMaze-v0 --steps 3000 --seed 4 --out rec
run probe_states probe --encoder tr_tmaze --data rec
run pretrain_frames cpc frames --data rec --out cf --set train.steps=30 --quiet
run probe_frames probe --encoder cf --data rec
printf 'The cat sat on the mat. A dog ran in the park. Birds fly over the sea. The sun is hot today.\n%.0s' {1..40} > corpus.txt
run pretrain_text cpc text --data corpus.txt --out ct --set train.steps=30 --set model.embedding=8 --set model.features=8 --set model.context=8 --set train.batch=2 --set data.sequence=4 --set cpc.horizon=2 --quiet
for i in $(seq 1 30); do printf 'pos\tgood fine great happy day %s\nneg\tbad awful sad poor night %s\n' "$i" "$i"; done > lab.tsv
run probe_text probe --encoder ct --data lab.tsv
if [ -n "$FS" ]; then
  run pretrain_audio cpc audio --config cpc-audio-fsdd --data "$FS" --out ca --set train.steps=20 --set train.batch=4 --quiet
  run probe_audio probe --encoder ca --data "$FS" --target digit --iters 100
fi
if [ -n "$FM" ]; then
  for obj in simclr-fashion moco-fashion cpc-image-fashion; do
    run "pretrain_$obj" pretrain image --config "$obj" --data "$FM" --out "$obj" --set train.steps=4 --set train.batch=32 --set knn.every=4 --set knn.bank=1000 --set knn.queries=200 --quiet
  done
  run probe_image probe --encoder simclr-fashion --data "$FM" --max-images 1000 --fine-tune 5
fi
run train_lab_rgb train --config lab-watermaze --aux curl --seed 2 --set env.options.obs='"rgb"' --set model.encoder='"conv"' --set run.total_steps=4000 --out tr_lab_rgb --quiet
run envs_score envs score TMaze-v0 --episodes 50 --seed 1
run lab_score envs score lab/watermaze --episodes 2 --seed 1 --policy oracle
run lab_rec record --env lab/watermaze --policy oracle --steps 400 --seed 2 --out labrec --option obs=grid
"$B" envs > envs.out
"$B" config show tmaze > cfgshow.out
cat rc.txt
