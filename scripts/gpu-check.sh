#!/usr/bin/env bash
# Verify the CUDA build on a GPU machine, in one run that fits a short lease.
#
#   scripts/build-cuda.sh                 # here: the binaries into .cuda/dist
#   scripts/gpu-check.sh pack             # here: binaries + FSDD recordings into .gpu/
#   scripts/gpu-check.sh run              # there (the repository root, .gpu/ beside it)
#   PARTS="bench audio" scripts/gpu-check.sh run   # only some parts, e.g. on a rerun
#   GPU_CHECK_DEVICE=cpu scripts/gpu-check.sh run  # rehearse the flow with a CPU build
#
# `run` needs no Rust, no CUDA toolkit and no network on the GPU machine: the driver's
# libcuda.so.1 and CUDA 13's cuBLAS, cuRAND, NVRTC and cudart, from the machine's CUDA
# installation or its Python `nvidia-*` wheels (PyTorch's), found below. Its parts, each
# under its own time limit (seconds, overridable; about 7 minutes in all, so that a rerun
# of one part still fits a 15-minute lease), all logged to $LOG_DIR/gpu-check.log with
# the figures gathered in $LOG_DIR/summary.txt (LOG_DIR: $OUT if set, else .gpu/out):
#   tests  tests/cuda.rs: loss and every gradient of a conv + LSTM + CPC network on CUDA
#          against the CPU, weights and optimiser state after an update, checkpoints
#          across devices, CartPole learning with the learner on the GPU, and the CPC
#          trainers' (audio, image, text) loss and gradients on CUDA against the CPU
#   lab    `rlcpc train` on the Lab watermaze agent with RGB frames (conv + LSTM + CPC),
#          16 actor threads, learner on cuda then on the cpu: env steps/s end to end
#   bench  `rlcpc bench --trainers-only` on cuda, then on the cpu: samples/s
#   audio  `rlcpc pretrain audio --device cuda` (cpc-audio-fsdd) on the FSDD recordings
#          for AUDIO_SECS, then `rlcpc probe` of its encoder against a random-init twin
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUNDLE=$ROOT/.gpu
PARTS=${PARTS:-tests lab bench audio}
DEV=${GPU_CHECK_DEVICE:-cuda}
TESTS_SECS=${TESTS_SECS:-120}
LAB_SECS=${LAB_SECS:-40}
BENCH_SECS=${BENCH_SECS:-60}
AUDIO_SECS=${AUDIO_SECS:-60}
PROBE_SECS=${PROBE_SECS:-40}

pack() {
  local dist=${DIST:-$ROOT/.cuda/dist}
  local fsdd=${FSDD:-$ROOT/../shared/data/fsdd/recordings}
  for f in "$dist/rlcpc" "$dist/cuda-tests" "$dist/BUILD-INFO"; do
    [[ -f $f ]] || { echo "gpu-check.sh pack: $f is missing; run scripts/build-cuda.sh first" >&2; exit 2; }
  done
  [[ -d $fsdd ]] || { echo "gpu-check.sh pack: no FSDD recordings at $fsdd (set FSDD=DIR)" >&2; exit 2; }
  rm -rf "$BUNDLE"
  mkdir -p "$BUNDLE"
  # Binaries compress about 4x; the recordings are carried as they are.
  tar -C "$dist" -cJf "$BUNDLE/bin.tar.xz" rlcpc cuda-tests BUILD-INFO
  tar -C "$(dirname "$fsdd")" -cf "$BUNDLE/fsdd.tar" "$(basename "$fsdd")"
  du -sh "$BUNDLE"/*
  echo "carry .gpu (and name it in .git/info/exclude or .gitignore: it is ignored as /.gpu)"
}

# Puts the CUDA libraries the binary needs on LD_LIBRARY_PATH and prints where each is.
find_cuda_libs() {
  local dirs=()
  for d in /usr/local/nvidia/lib64 /usr/local/nvidia/lib /usr/local/cuda/lib64; do
    [[ -d $d ]] && dirs+=("$d")
  done
  local py
  for py in python3 /opt/torch/.venv/bin/python3; do
    command -v "$py" >/dev/null 2>&1 || continue
    while IFS= read -r d; do dirs+=("$d"); done < <("$py" - <<'EOF' 2>/dev/null
import glob, os, site
roots = site.getsitepackages() + [site.getusersitepackages()]
for r in roots:
    for d in sorted(glob.glob(os.path.join(r, "nvidia", "*", "lib"))):
        print(d)
EOF
    )
  done
  if ((${#dirs[@]})); then
    local joined
    joined=$(printf '%s:' "${dirs[@]}")
    export LD_LIBRARY_PATH=${joined%:}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  fi
  echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
  ldd "$BIN/rlcpc" | grep -E 'cuda|cublas|curand|nvrtc|cudart' || true
  if ldd "$BIN/rlcpc" | grep -q 'not found'; then
    echo "gpu-check.sh: libraries not found:" >&2
    ldd "$BIN/rlcpc" | grep 'not found' >&2
    echo "  libcuda.so.1 comes with the NVIDIA driver; the others with CUDA 13 (a toolkit, or" >&2
    echo "  pip install nvidia-cublas nvidia-curand nvidia-cuda-runtime); or set LD_LIBRARY_PATH" >&2
    return 1
  fi
}

# part NAME SECS CMD...: runs CMD under a time limit (SIGINT first, so a run stops at its
# next step and reports), logs it to $LOG, prints its wall time and status. A part that
# fails marks the whole check failed; training runs (lab-*, audio-train) are meant to be
# stopped by the limit, so exit 124 is theirs to give.
part() {
  local name=$1 secs=$2
  shift 2
  printf '\n== %s (limit %s s): %s\n' "$name" "$secs" "$*" | tee -a "$LOG"
  local t0=$SECONDS rc
  timeout -s INT -k 20 "$secs" "$@" 2>&1 | tee -a "$LOG"
  rc=${PIPESTATUS[0]}
  echo "-- $name: exit $rc after $((SECONDS - t0)) s" | tee -a "$LOG"
  STATUS+=("$name: exit $rc, $((SECONDS - t0)) s")
  if [[ $rc != 0 && ! ($rc == 124 && ($name == lab-* || $name == audio-train)) ]]; then
    FAILED=1
  fi
}

run_checks() {
  LOG_DIR=${LOG_DIR:-${OUT:-$BUNDLE/out}}
  mkdir -p "$LOG_DIR"
  LOG=$LOG_DIR/gpu-check.log
  : >"$LOG"
  WORK=${WORK:-/tmp/rlcpc-gpu-check}
  rm -rf "$WORK"
  mkdir -p "$WORK"
  BIN=$WORK/bin
  mkdir -p "$BIN"
  if [[ $DEV == cuda ]]; then
    tar -C "$BIN" -xJf "$BUNDLE/bin.tar.xz"
  else
    # Rehearsal: the CPU build of this checkout (no CUDA tests).
    cp "${RLCPC_BIN:-$ROOT/target/release/rlcpc}" "$BIN/rlcpc"
  fi
  [[ -f $BUNDLE/fsdd.tar ]] && tar -C "$WORK" -xf "$BUNDLE/fsdd.tar"
  STATUS=()
  FAILED=0
  {
    echo "gpu-check.sh $(date -u +%FT%TZ), parts: $PARTS, device: $DEV"
    cat "$BIN/BUILD-INFO" 2>/dev/null
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null
    nvidia-smi 2>/dev/null | grep -o 'CUDA Version: [0-9.]*'
    echo "cpus: $(nproc), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)"
  } | tee -a "$LOG"
  if [[ $DEV == cuda ]]; then
    # Not in a pipeline: it exports LD_LIBRARY_PATH into this shell.
    local libs_rc=0
    find_cuda_libs >"$WORK/libs.txt" 2>&1 || libs_rc=$?
    tee -a "$LOG" <"$WORK/libs.txt"
    [[ $libs_rc == 0 ]] || exit 1
  fi
  cd "$WORK" || exit 1
  local rl=$BIN/rlcpc
  for p in $PARTS; do
    case $p in
    tests)
      if [[ $DEV == cuda ]]; then
        part tests "$TESTS_SECS" "$BIN/cuda-tests" --test-threads=1 --nocapture
      else
        echo "(rehearsal: no CUDA tests)"
      fi
      ;;
    lab)
      for d in "$DEV" cpu; do
        part "lab-$d" "$LAB_SECS" "$rl" train --config lab-watermaze --quiet --device "$d" \
          --out "$WORK/lab-$d" --set 'env.options.obs="rgb"' --set 'model.encoder="conv"' \
          --set run.workers=16 --set run.total_steps=100000000 --set run.checkpoint_every=0
        [[ $DEV == cpu ]] && break
      done
      ;;
    bench)
      for d in "$DEV" cpu; do
        # The CPU side with fewer steps per run: it is the slower one by far.
        part "bench-$d" "$BENCH_SECS" "$rl" bench --trainers-only --device "$d" --repeats 3 \
          --trainer-steps "$([[ $d == cpu ]] && echo 3 || echo 10)"
        [[ $DEV == cpu ]] && break
      done
      ;;
    audio)
      if [[ ! -d $WORK/recordings ]]; then
        echo "no FSDD recordings in the bundle: skipping audio"
        continue
      fi
      part audio-train "$AUDIO_SECS" "$rl" pretrain audio --config cpc-audio-fsdd --device "$DEV" \
        --data "$WORK/recordings" --out "$WORK/audio" --quiet --set train.steps=1000000
      part audio-probe "$PROBE_SECS" "$rl" probe --encoder "$WORK/audio/encoder.safetensors" \
        --data "$WORK/recordings" --target speaker
      ;;
    *) echo "unknown part '$p' (parts: tests lab bench audio)" >&2 ;;
    esac
  done
  echo
  echo "== summary"
  printf '%s\n' "${STATUS[@]}" | tee "$LOG_DIR/summary.txt"
  # The figures, one place to read them from.
  grep -hE '^(== |done after|interrupted after|ms/update|cpc |simclr |moco |test result|probe |cpc \(|random-init|MFCC|.*agree)' \
    "$LOG" | tee -a "$LOG_DIR/summary.txt" || true
  if ((FAILED)); then
    echo "gpu-check.sh: some parts failed (see above)" | tee -a "$LOG_DIR/summary.txt"
  fi
  exit "$FAILED"
}

case ${1:-} in
pack) pack ;;
run) run_checks ;;
*)
  sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
  ;;
esac
