#!/usr/bin/env bash
# The bundled model's training runs (session 4 onwards), resumable across sessions:
#   tools/train_bundled.sh V|F OUTDIR
# V: trains on IRCADb-01, IRCADb-07 and both TotalSegmentator CTs and logs the Dice on
#    IRCADb-17, which it never sees (the fixed validation split that chooses settings).
# F: the same settings and seed on all five training cases: the candidate bundled model.
# Each run writes OUTDIR/model.safetensors, OUTDIR/model.safetensors.checkpoint (every
# epoch), OUTDIR/log.csv and OUTDIR/curves.png, and continues bit-identically from
# OUTDIR's checkpoint when there is one (models/training/V and F hold the committed state:
# train there and commit them before a session ends). One thread each, so both runs share
# a 2-core machine:
#   nohup tools/train_bundled.sh V models/training/V > V.out 2>&1 &
#   nohup tools/train_bundled.sh F models/training/F > F.out 2>&1 &
# The external radcttaceomics cases are never used here.
set -euo pipefail
run=$1 out=$2
cd "$(dirname "$0")/.."
D=${DATA:-../shared/data}
CLI=${CLI:-.build/release/liverseg-cli}
case_args() { for c in "$@"; do printf -- "--data %s " "$c"; done; }
IRCADB_TRAIN="$D/ircadb1-01/ct.nii.gz,$D/ircadb1-01/liver.nii.gz $D/ircadb1-07/ct.nii.gz,$D/ircadb1-07/liver.nii.gz"
TOTALSEG="$D/totalseg-example/ct-3mm.nii.gz,$D/totalseg-example/liver-3mm.nii.gz $D/totalseg-example/ct-20slices.nii.gz,$D/totalseg-example/liver-20slices.nii.gz"
HELD_OUT="$D/ircadb1-17/ct.nii.gz,$D/ircadb1-17/liver.nii.gz"
case $run in
    V) data="$(case_args $IRCADB_TRAIN $TOTALSEG) --val $HELD_OUT" ;;
    F) data="$(case_args $IRCADB_TRAIN $HELD_OUT $TOTALSEG)" ;;
    *) echo "usage: $0 V|F OUTDIR" >&2; exit 64 ;;
esac
mkdir -p "$out"
checkpoint="$out/model.safetensors.checkpoint"
[ -f "$checkpoint" ] && resume=$checkpoint || resume=""
# shellcheck disable=SC2086
exec "$CLI" train $data --arch paper --spacing 3 3 3 --patch 64 64 48 --iterations-per-epoch 50 \
    --lr 0.005 --lr-step 200 --epochs 300 --hu-shift=-70,30 --hu-scale 0.9,1.1 --seed 0 --threads 1 \
    --augmentation anatomical --quiet --out "$out/model.safetensors" --log "$out/log.csv" --curves "$out/curves.png" \
    ${resume:+--resume "$resume"}
