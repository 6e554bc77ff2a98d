#!/usr/bin/env bash
# Set up, then run the main job end to end, offline: build a store with the offline embedder,
# import a few labelled examples per concept, classify held-out inputs, train the head, evaluate.
# Uses ../shared/data (CIFAR-10 JPEGs, BANKING77) when present, else generated images.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$(pwd)/.venv/bin:$PATH"
DATA=${VECCLF_DEMO_DATA:-../shared/data}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
export VECCLF_STORE="$WORK/store"

vecclf init --model offline
if [ -d "$DATA/cifar10-test" ]; then
  IMAGES="$DATA/cifar10-test"
else
  echo "no $DATA/cifar10-test: generating a small colour demo instead" >&2
  IMAGES="$WORK/images"
  python - "$IMAGES" <<'PY'
import sys, numpy as np
from pathlib import Path
from PIL import Image
rng = np.random.default_rng(0)
for name, rgb in {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220)}.items():
    d = Path(sys.argv[1]) / name; d.mkdir(parents=True)
    for i in range(120):
        arr = np.clip(np.array(rgb) + rng.normal(0, 25, (64, 64, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(arr).save(d / f"{i:04d}.jpg")
PY
fi
echo "== importing 5 examples per concept from $IMAGES" >&2
vecclf import "$IMAGES" --limit-per-concept 5
QUERIES=()
for d in "$IMAGES"/*/; do
  while IFS= read -r f; do QUERIES+=("$f"); done < <(ls "$d" | sort | sed -n '101,105p' | sed "s|^|$d|")
done
echo "== classifying ${#QUERIES[@]} held-out images" >&2
vecclf predict "${QUERIES[@]}" --json > "$WORK/pred.json"
python - "$WORK/pred.json" <<'PY'
import json, sys
from pathlib import Path
preds = json.load(open(sys.argv[1]))["predictions"]
hits = sum(Path(p["source"]).parent.name == p["nearest"] for p in preds)
for p in preds[:: max(1, len(preds) // 5)]:
    print(f"  {p['source']}: {p['concept']} (score {p['score']:.2f})")
print(f"image accuracy, 5 examples per concept: {hits}/{len(preds)} = {hits / len(preds):.0%}")
PY
if [ -f "$DATA/banking77/train.csv" ]; then
  echo "== texts: BANKING77, 10 examples per intent" >&2
  vecclf import "$DATA/banking77/train.csv" --limit-per-concept 10
  vecclf predict --text "I think someone stole my card" --text "how long does a transfer take?" --top 3
  echo "== training the logistic head, then leave-one-out evaluation of k-NN" >&2
  vecclf train
  vecclf predict --text "I think someone stole my card" --method head --top 3
  vecclf eval --method knn --out "$WORK/evaluation" --json \
    | python -c "import json,sys; r=json.load(sys.stdin); print(f\"k-NN leave-one-out on {r['examples']} {r['space']} examples: accuracy {r['accuracy']:.3f}, macro F1 {r['macro_f1']:.3f}\")"
fi
vecclf info --json | python -c "import json,sys; i=json.load(sys.stdin); print('store:', i['inputs'], 'concepts:', i['concepts'])"
