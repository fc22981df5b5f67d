#!/usr/bin/env bash
# Builds a many-speaker spoken-digit corpus for the audio probes: many speakers, few
# utterances each, every file the digit 0-9 spoken once, all resampled to 8 kHz mono
# 16-bit and peak-normalised to -3 dBFS (so no source is told apart by its bandwidth or
# its recording level). Writes OUT/manifest.csv
# (path,speaker,digit,source) for `rlcpc`'s `csv` layout and the WAVs under OUT/<source>/.
#
#   scripts/speakers.sh OUT [PER_SPEAKER] [FSDD_RECORDINGS]
#
# Speakers (PER_SPEAKER = 20, the default: each digit twice):
#   fsdd      6 real speakers of the Free Spoken Digit Dataset (if FSDD_RECORDINGS is given
#             or ../shared/data/fsdd/recordings exists): the first PER_SPEAKER/10 takes of
#             each digit.
#   asterisk  5 real recorded voices of Debian's asterisk-core-sounds-{en,fr,it,ru}-wav and
#             asterisk-prompt-it-menardi-wav: digits/0..9.wav, once each (10 per speaker),
#             each in its own language. es_MX_f_Allison is left out: it may be the voice of
#             en_US_f_Allison.
#   flite     flite's 4 English voices (awb, rms, slt, kal16), each digit PER_SPEAKER/10
#             times at a varied speaking rate.
#   espeak    espeak-ng's voice variants (`espeak-ng --voices=variant`, about 100), each one
#             speaker with one English accent (the accents taken in turn), each digit
#             PER_SPEAKER/10 times at a varied rate and pitch (seeded: the same corpus on
#             every run of the same versions).
# Needs sox, espeak-ng and flite (apt-get install sox espeak-ng flite); sources whose
# packages are missing are skipped with a note.
set -euo pipefail
out=${1:?usage: speakers.sh OUT [PER_SPEAKER] [FSDD_RECORDINGS]}
per=${2:-20}
fsdd=${3:-$(dirname "$0")/../../shared/data/fsdd/recordings}
if ! [[ $per =~ ^[0-9]+$ ]] || ((per < 10 || per % 10 != 0)); then
    echo "PER_SPEAKER must be a multiple of 10 (each digit the same number of times), not '$per'" >&2
    exit 1
fi
command -v sox >/dev/null || { echo "sox is not installed (apt-get install sox)" >&2; exit 1; }
reps=$((per / 10))
words=(zero one two three four five six seven eight nine)
mkdir -p "$out"
manifest="$out/manifest.csv"
echo "path,speaker,digit,source" > "$manifest"
to8k() { sox -q -R "$1" -r 8000 -c 1 -b 16 "$2" gain -n -3; }
RANDOM=7 # bash's generator, seeded: the same rates and pitches on every run

if [[ -d $fsdd ]]; then
    mkdir -p "$out/fsdd"
    for f in "$fsdd"/*_*_*.wav; do
        b=$(basename "$f" .wav)
        IFS=_ read -r digit speaker take <<< "$b"
        ((take < reps)) || continue
        to8k "$f" "$out/fsdd/$b.wav"
        echo "fsdd/$b.wav,fsdd-$speaker,$digit,fsdd" >> "$manifest"
    done
else
    echo "note: no FSDD recordings at '$fsdd'; its 6 speakers are left out" >&2
fi

n_ast=0
for dir in /usr/share/asterisk/sounds/{en_US_f_Allison,fr_CA_f_June,it_IT_f_Menardi,it_IT_m_Carlo,ru_RU_f_IvrvoiceRU}; do
    [[ -d $dir/digits ]] || continue
    voice=$(basename "$dir")
    mkdir -p "$out/asterisk/$voice"
    for d in 0 1 2 3 4 5 6 7 8 9; do
        to8k "$dir/digits/$d.wav" "$out/asterisk/$voice/$d.wav"
        echo "asterisk/$voice/$d.wav,asterisk-$voice,$d,asterisk" >> "$manifest"
    done
    n_ast=$((n_ast + 1))
done
((n_ast > 0)) || echo "note: no asterisk voices installed; left out (apt-get install asterisk-core-sounds-en-wav ...)" >&2

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
if command -v flite >/dev/null; then
    for voice in awb rms slt kal16; do
        mkdir -p "$out/flite/$voice"
        for d in 0 1 2 3 4 5 6 7 8 9; do
            for ((r = 0; r < reps; r++)); do
                jitter=$((RANDOM % 31)) # drawn here: a subshell's RANDOM is reseeded
                stretch=$(awk -v r=$jitter 'BEGIN { printf "%.2f", 0.85 + r / 100 }')
                flite -voice "$voice" --setf duration_stretch="$stretch" -t "${words[d]}" -o "$tmp/x.wav"
                to8k "$tmp/x.wav" "$out/flite/$voice/${d}_$r.wav"
                echo "flite/$voice/${d}_$r.wav,flite-$voice,$d,flite" >> "$manifest"
            done
        done
    done
else
    echo "note: flite is not installed; its 4 voices are left out" >&2
fi

if command -v espeak-ng >/dev/null; then
    accents=(en-us en-gb en-gb-scotland en-gb-x-rp en-029 en-gb-x-gbclan en-gb-x-gbcwmd en-us-nyc)
    # The variant's file name, which may hold a space ("Mr serious"); espeak-ng takes an
    # unknown variant without complaint, so the names are read from its own list.
    mapfile -t variants < <(espeak-ng --voices=variant | grep -o '!v/.*$' | sed 's|^!v/||; s/ *$//' | sort -u)
    i=0
    for v in "${variants[@]}"; do
        accent=${accents[i % ${#accents[@]}]}
        i=$((i + 1))
        name=$(echo "$v" | tr -c 'A-Za-z0-9\n' '_')
        mkdir -p "$out/espeak/$name"
        for d in 0 1 2 3 4 5 6 7 8 9; do
            for ((r = 0; r < reps; r++)); do
                espeak-ng -v "$accent+$v" -s $((150 + RANDOM % 41)) -p $((42 + RANDOM % 17)) \
                    -w "$tmp/x.wav" "${words[d]}"
                to8k "$tmp/x.wav" "$out/espeak/$name/${d}_$r.wav"
                echo "espeak/$name/${d}_$r.wav,espeak-$name,$d,espeak" >> "$manifest"
            done
        done
    done
else
    echo "note: espeak-ng is not installed; its voices are left out" >&2
fi

files=$(($(wc -l < "$manifest") - 1))
speakers=$(tail -n +2 "$manifest" | cut -d, -f2 | sort -u | wc -l)
echo "wrote $files files of $speakers speakers to $out (manifest.csv: path,speaker,digit,source)"
