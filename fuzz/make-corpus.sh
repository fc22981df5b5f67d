#!/usr/bin/env bash
# Writes the seed corpora of the fuzz targets (fuzz/corpus/TARGET/), small valid inputs
# of each reader; the checkpoint seeds come from a tiny run of the release binary
# (cargo build --release first). Each target's first byte, where it reads one, picks
# the file kind (fuzz/fuzz_targets/*.rs).
set -euo pipefail
cd "$(dirname "$0")/.."
c=fuzz/corpus
rm -rf "$c" && mkdir -p "$c"/{config,audio,idx,cifar,image_folder,checkpoint,text,bridge}
for p in cartpole tmaze popgym lab-watermaze cartpole-lstm-cpc; do
    { echo "run.seed=3"; cat "configs/$p.toml"; } > "$c/config/$p"
done
python3 - "$c" <<'PY'
import io, json, struct, sys, wave, zlib
c = sys.argv[1]
# A 16-bit mono WAV of 200 samples (kind 0), and the FLAC fixture (kind 1).
b = io.BytesIO()
with wave.open(b, "wb") as w:
    w.setnchannels(1); w.setsampwidth(2); w.setframerate(16000)
    w.writeframes(b"".join(struct.pack("<h", (i * 97) % 2000 - 1000) for i in range(200)))
open(f"{c}/audio/sine.wav", "wb").write(b"\0" + b.getvalue())
open(f"{c}/audio/sine.flac", "wb").write(b"\1" + open("tests/fixtures/sine16k.flac", "rb").read())
# IDX: 3 images of 4x4 and their labels, as one file (kind 0) and as a set (kind 1).
img = bytes([0, 0, 8, 3]) + struct.pack(">III", 3, 4, 4) + bytes(range(48))
lab = bytes([0, 0, 8, 1]) + struct.pack(">I", 3) + bytes([0, 1, 2])
open(f"{c}/idx/one", "wb").write(b"\0" + img)
open(f"{c}/idx/set", "wb").write(b"\1" + img + lab)
# CIFAR-10: class names, 0xff, two records.
rec = lambda l: bytes([l]) + bytes((i * 7 + l) % 256 for i in range(3072))
open(f"{c}/cifar/two", "wb").write(b"cat\ndog\n" + b"\xff" + rec(0) + rec(1))
# A 3x2 RGB PNG (kind 0).
def chunk(t, d): return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
raw = b"".join(b"\0" + bytes(range(y * 9, y * 9 + 9)) for y in range(2))
png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 3, 2, 8, 2, 0, 0, 0)) \
    + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
open(f"{c}/image_folder/rgb.png", "wb").write(b"\0" + png)
# Labelled lines and running text (the first byte picks the encoding).
open(f"{c}/text/labelled", "wb").write(b"\0" + "0 a fine film .\n1 a dull one , sadly .\n0 héllo wörld !\n".encode())
open(f"{c}/text/latin1", "wb").write(b"\2" + "Call me Ishmael. Some years ago, never mind how long.\n".encode("latin-1"))
# The bridge's first line: spaces rlcpc reads, one it refuses, and an error.
for i, h in enumerate([
    {"ok": True, "observation_space": {"box": [2], "low": [-1, -1], "high": [1, 1], "dtype": "float32"}, "action_space": {"discrete": 2, "start": 0}},
    {"ok": True, "observation_space": {"box": [2, 2, 1], "low": [0] * 4, "high": [255] * 4, "dtype": "uint8"}, "action_space": {"discrete": 3, "start": 1}},
    {"ok": True, "observation_space": {"unsupported": "Dict()"}, "action_space": {"discrete": 2}},
    {"ok": False, "error": "gymnasium.error.NameNotFound: Environment Nope doesn't exist."},
]):
    open(f"{c}/bridge/hello{i}", "w").write(json.dumps(h) + "\n")
PY
# A tiny run's checkpoint (kind 0: eval), its encoder (kind 1) and a recording (kind 2).
t=$(mktemp -d)
./target/release/rlcpc train --quiet --out "$t/run" --set run.total_steps=64 --set env.num_envs=2 \
    --set run.workers=1 --set algo.unroll=8 --set 'model.mlp_hidden=[4]' >/dev/null
./target/release/rlcpc export-encoder --checkpoint "$t/run" --out "$t/enc.safetensors" >/dev/null
./target/release/rlcpc record --env CartPole-v1 --steps 16 --out "$t/rec" >/dev/null
{ printf '\0'; cat "$t/run/checkpoint.safetensors"; } > "$c/checkpoint/run"
{ printf '\1'; cat "$t/enc.safetensors"; } > "$c/checkpoint/encoder"
{ printf '\2'; cat "$t/rec/trajectories.safetensors"; } > "$c/checkpoint/recording"
rm -rf "$t"
du -sh "$c"/*
