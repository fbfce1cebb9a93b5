#!/usr/bin/env bash
# The main job: segment a real CT with the bundled model (network + dense CRF), write the mask, a picture and
# the evaluation against the reference mask. The CT is TotalSegmentator's 20-slice abdomen
# (another scanner than IRCADb; its reference is that tool's own output). Since the data
# roles of 2026-12 it is a training case; the external test set may not appear in pictures.
set -euo pipefail
DATA=${DATA:-../shared/data}
OUT=${OUT:-out}
CLI=${CLI:-.build/release/liverseg-cli}
CASE=${CASE:-$DATA/totalseg-example/ct-20slices.nii.gz}
REFERENCE=${REFERENCE:-$DATA/totalseg-example/liver-20slices.nii.gz}
mkdir -p "$OUT"
"$CLI" segment "$CASE" "$OUT/liver.nii.gz" --probability "$OUT/probability.nii.gz" --preview "$OUT/preview.png"
"$CLI" eval "$OUT/liver.nii.gz" "$REFERENCE" --ct "$CASE" --preview "$OUT/evaluation.png"
echo "wrote $OUT/liver.nii.gz, $OUT/probability.nii.gz, $OUT/preview.png (mask outline) and $OUT/evaluation.png (red: liverseg, green: reference)"
