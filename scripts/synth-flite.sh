#!/usr/bin/env bash
# Synthesises a labelled speech corpus with flite (Debian package `flite`): every voice
# reads the same sentences. Writes OUT/VOICE/VOICE-NNN.wav and, beside each, a TIMIT-style
# VOICE-NNN.phn alignment ("START END PHONE" per line, in samples of the WAV's rate) from
# flite's phone end times (-psdur). The first folder is the speaker for `rlcpc`'s `dirs`
# layout; the .phn files give `rlcpc probe --target phone` its frame labels.
#   scripts/synth-flite.sh OUT [SENTENCES] [TEXT_FILE]
set -euo pipefail
out=${1:?usage: synth-flite.sh OUT [SENTENCES] [TEXT_FILE]}
n=${2:-60}
text=${3:-/usr/share/common-licenses/GPL-3}
command -v flite >/dev/null || { echo "flite is not installed (apt-get install flite)" >&2; exit 1; }
mkdir -p "$out"
# Sentences of 6 to 20 words from running text.
tr '\n' ' ' < "$text" | tr -s ' ' | sed 's/[.;:?!] /.\n/g' | tr -cd 'A-Za-z ,.\n' |
    awk 'NF >= 6 && NF <= 20' | head -n "$n" > "$out/sentences.txt"
for voice in awb rms slt kal16; do
    mkdir -p "$out/$voice"
    i=0
    while IFS= read -r s; do
        base="$out/$voice/$voice-$(printf %03d $i)"
        durs=$(flite -voice "$voice" -t "$s" -o "$base.wav" -psdur)
        rate=$(python3 -c "import wave,sys; print(wave.open(sys.argv[1]).getframerate())" "$base.wav")
        echo "$durs" | tr ' ' '\n' | awk -F: -v r="$rate" 'NF == 2 { e = int($2 * r); print s, e, $1; s = e } BEGIN { s = 0 }' > "$base.phn"
        i=$((i + 1))
    done < "$out/sentences.txt"
done
echo "wrote $(find "$out" -name '*.wav' | wc -l) files to $out"
