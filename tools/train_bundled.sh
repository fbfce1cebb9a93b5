#!/usr/bin/env bash
# The bundled model's training runs (session 4 onwards), resumable across sessions:
#   tools/train_bundled.sh V|F|loo-CASE OUTDIR
#   tools/train_bundled.sh cases        (prints each training case: NAME CT,MASK)
# F: trains on all five training cases: the candidate bundled model.
# loo-CASE (CASE one of ircadb1-01 ircadb1-07 ircadb1-17 totalseg-3mm totalseg-20slices):
#    the same settings and seed on the other four cases, logging the Dice on CASE, which it
#    never sees, every epoch: the five folds of the leave-one-out table.
# V: the fold loo-ircadb1-17 (the fixed validation split that chooses settings; its
#    committed state lives in models/training/V).
# Each run writes OUTDIR/model.safetensors, OUTDIR/model.safetensors.checkpoint (every
# epoch), OUTDIR/log.csv and OUTDIR/curves.png, and continues bit-identically from
# OUTDIR's checkpoint when there is one (models/training/* hold the committed state:
# train there and commit them before a session ends). One thread each, so two runs share
# a 2-core machine:
#   nohup tools/train_bundled.sh V models/training/V > V.out 2>&1 &
#   nohup tools/train_bundled.sh F models/training/F > F.out 2>&1 &
# EPOCHS (default 300), AUGMENTATION (default anatomical; elastic, lesions, symmetric, none), SPACING
# (the model grid in mm, default 3) and SEED (initialisation and patch sampling, default 0)
# vary the recipe for controlled comparisons, e.g. the augmentation comparison in docs/training.md:
#   EPOCHS=60 AUGMENTATION=symmetric tools/train_bundled.sh V models/training/aug-symmetric
# The external radcttaceomics cases are never used here.
set -euo pipefail
run=$1 out=${2:-}
cd "$(dirname "$0")/.."
D=${DATA:-../shared/data}
CLI=${CLI:-.build/release/liverseg-cli}
# The training cases in the order every run lists them (the order fixes patch sampling).
declare -A CASE=(
    [ircadb1-01]="$D/ircadb1-01/ct.nii.gz,$D/ircadb1-01/liver.nii.gz"
    [ircadb1-07]="$D/ircadb1-07/ct.nii.gz,$D/ircadb1-07/liver.nii.gz"
    [ircadb1-17]="$D/ircadb1-17/ct.nii.gz,$D/ircadb1-17/liver.nii.gz"
    [totalseg-3mm]="$D/totalseg-example/ct-3mm.nii.gz,$D/totalseg-example/liver-3mm.nii.gz"
    [totalseg-20slices]="$D/totalseg-example/ct-20slices.nii.gz,$D/totalseg-example/liver-20slices.nii.gz"
)
ORDER="ircadb1-01 ircadb1-07 ircadb1-17 totalseg-3mm totalseg-20slices"
training_data() { # all cases but $1, then $1 as the validation case
    for c in $ORDER; do [ "$c" = "$1" ] || printf -- "--data %s " "${CASE[$c]}"; done
    [ -z "$1" ] || printf -- "--val %s" "${CASE[$1]}"
}
case $run in
    cases) for c in $ORDER; do echo "$c ${CASE[$c]}"; done; exit 0 ;;
    V) data=$(training_data ircadb1-17) ;;
    F) data=$(training_data "") ;;
    loo-*) [ -n "${CASE[${run#loo-}]:-}" ] || { echo "unknown case ${run#loo-}" >&2; exit 64; }
        data=$(training_data "${run#loo-}") ;;
    *) echo "usage: $0 V|F|loo-CASE OUTDIR" >&2; exit 64 ;;
esac
[ -n "$out" ] || { echo "usage: $0 $run OUTDIR" >&2; exit 64; }
mkdir -p "$out"
checkpoint="$out/model.safetensors.checkpoint"
[ -f "$checkpoint" ] && resume=$checkpoint || resume=""
# shellcheck disable=SC2086
exec "$CLI" train $data --arch paper --spacing ${SPACING:-3} ${SPACING:-3} ${SPACING:-3} --patch 64 64 48 --iterations-per-epoch 50 \
    --lr 0.005 --lr-step 200 --epochs "${EPOCHS:-300}" --hu-shift=-70,30 --hu-scale 0.9,1.1 --seed ${SEED:-0} --threads 1 \
    --augmentation "${AUGMENTATION:-anatomical}" --quiet --out "$out/model.safetensors" --log "$out/log.csv" --curves "$out/curves.png" \
    ${resume:+--resume "$resume"}
