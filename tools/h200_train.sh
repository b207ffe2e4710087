#!/usr/bin/env bash
# One full training run of the color-denoising families on one GPU, within ~8.5 minutes of wall time.
#   phase 1: base (sigma 20) + dedicated from-scratch sigma 40/60/80, 4 parallel processes
#   phase 2: dni / adafm / ftn / cfsnet from the base at sigma 80, 4 parallel processes
#   phase 3: calibrate the four families (PSNR vs alpha, sigma 20..80) on the 32 validation images
#   phase 4: export the four families to .safetensors; tar runs/ (no optimizer state) into $OUT
# Usage (repo root):  DATA=.data OUT=/some/dir bash tools/h200_train.sh
# Data layout: $DATA/CBSD432_list.txt and $DATA/BSDS500/{train,val,test}/<id>.jpg
# Every knob is an environment variable (defaults below); RESUME: rerunning with the same RUNS
# continues each run from runs/<name>/ckpt.pt (a finished run is not retrained).
set -euo pipefail
export PYTHONUNBUFFERED=1
cd "$(dirname "$0")/.."

PY=${PY:-python3}
DATA=${DATA:-.data}
OUT=${OUT:-out}
RUNS=${RUNS:-runs}
CH=${CH:-48}
BLOCKS=${BLOCKS:-8}
BATCH=${BATCH:-64}
PATCH=${PATCH:-96}
SEC1=${SEC1:-200}          # training seconds per phase-1 process (start-up ~10-15 s comes on top)
SEC2=${SEC2:-175}          # training seconds per phase-2 process
LR=${LR:-1e-3}
THREADS=${THREADS:-4}      # CPU threads per process (16 cores / 4 processes)
ADAFM_K=${ADAFM_K:-3}
TRAIN_ARGS=${TRAIN_ARGS:-}  # extra train.py args for every run
CALIB_ARGS=${CALIB_ARGS:-}  # extra calibrate.py args (e.g. --nval 4 --crop 64 for a quick test)
EXPORT=${EXPORT:-1}

# The device tool returns at most 8 files from $OUT: everything goes into three tarballs.
LOGS="$RUNS/_logs"; WEIGHTS="$RUNS/_weights"
mkdir -p "$OUT" "$RUNS" "$LOGS" "$WEIGHTS"
T0=$(date +%s)
say() { echo "[h200 +$(( $(date +%s) - T0 ))s] $*"; }

finish() {
  rc=$?
  say "packing (exit status so far: $rc)"
  for d in "$RUNS"/*/; do n=$(basename "$d"); [ -f "$d/log.csv" ] && cp -f "$d/log.csv" "$LOGS/$n.csv"; done 2>/dev/null || true
  # runs/ without the optimizer-state checkpoints (ckpt.pt); keep ckpt.pt only where no model.pt exists
  excl=()
  for d in "$RUNS"/*/; do [ -f "$d/model.pt" ] && excl+=(--exclude="$d/ckpt.pt" --exclude="${d%/}/ckpt.pt"); done
  tar czf "$OUT/runs.tgz" "${excl[@]}" --exclude='*.tmp' --exclude="$WEIGHTS" --exclude="$LOGS" "$RUNS" 2>/dev/null || say "tar failed"
  tar czf "$OUT/weights.tgz" "$WEIGHTS" 2>/dev/null || say "tar weights failed"
  tar czf "$OUT/logs.tgz" "$LOGS" 2>/dev/null || say "tar logs failed"
  ls -la "$OUT" "$LOGS" "$WEIGHTS" || true
  du -sh "$OUT/runs.tgz" 2>/dev/null || true
  say "done, status $rc"
}
trap finish EXIT

$PY - <<'EOF'
import torch, sys
print("python", sys.version.split()[0], "torch", torch.__version__, "cuda", torch.cuda.is_available(),
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")
EOF
[ -f "$DATA/CBSD432_list.txt" ] || { echo "missing $DATA/CBSD432_list.txt"; exit 2; }
say "data: $(find "$DATA/BSDS500" -name '*.jpg' | wc -l) jpgs under $DATA/BSDS500"

common=(--channels "$CH" --blocks "$BLOCKS" --batch "$BATCH" --patch "$PATCH" --lr "$LR" --threads "$THREADS"
        --data "$DATA" --runs "$RUNS" --adafm-k "$ADAFM_K" --ckpt-every 60 --log-every 100)

# run_parallel NAME:ARGS... ; waits for all, reports each, fails if any failed
run_parallel() {
  local pids=() names=() fail=0
  for spec in "$@"; do
    local name=${spec%%:*} args=${spec#*:}
    # shellcheck disable=SC2086
    $PY tools/train.py --name "$name" "${common[@]}" $args $TRAIN_ARGS > "$LOGS/$name.log" 2>&1 &
    pids+=($!); names+=("$name")
    say "started $name (pid $!): $args"
  done
  for i in "${!pids[@]}"; do
    if wait "${pids[$i]}"; then say "ok     ${names[$i]}: $(tail -n 1 "$LOGS/${names[$i]}.log")"
    else say "FAILED ${names[$i]} (status $?); last lines:"; tail -n 20 "$LOGS/${names[$i]}.log"; fail=1; fi
  done
  return $fail
}

say "phase 1: base sigma 20 + dedicated 40/60/80, $SEC1 s each"
run_parallel "base:--family base --sigma 20 --seconds $SEC1 --seed 1" \
             "s40:--family base --sigma 40 --seconds $SEC1 --seed 2" \
             "s60:--family base --sigma 60 --seconds $SEC1 --seed 3" \
             "s80:--family base --sigma 80 --seconds $SEC1 --seed 4" || { [ -f "$RUNS/base/model.pt" ] || exit 1; say "continuing: base exists"; }

say "phase 2: families at sigma 80 from the base, $SEC2 s each"
B="$RUNS/base/model.pt"
p2=0
run_parallel "dni:--family dni --sigma 80 --base $B --seconds $SEC2 --seed 5" \
             "adafm:--family adafm --sigma 80 --base $B --seconds $SEC2 --seed 6" \
             "ftn:--family ftn --sigma 80 --base $B --seconds $SEC2 --seed 7" \
             "cfsnet:--family cfsnet --sigma 80 --base $B --seconds $SEC2 --seed 8" || p2=1

say "phase 3: calibration"
ded=()
for s in 40 60 80; do [ -f "$RUNS/s$s/model.pt" ] && ded+=("$RUNS/s$s/model.pt"); done
pids=(); fams=()
for f in dni adafm ftn cfsnet; do
  [ -f "$RUNS/$f/model.pt" ] || { say "skip calibration of $f (no model)"; continue; }
  # shellcheck disable=SC2086
  $PY tools/calibrate.py --ckpt "$RUNS/$f/model.pt" --base "$B" --data "$DATA" -o "$RUNS/calib/$f.json" \
      --dedicated "${ded[@]}" $CALIB_ARGS > "$LOGS/calib_$f.log" 2>&1 &
  pids+=($!); fams+=("$f")
done
p3=0
for i in "${!pids[@]}"; do
  if wait "${pids[$i]}"; then say "ok calib ${fams[$i]}"; grep -E "gap|wrote" "$LOGS/calib_${fams[$i]}.log" || true
  else say "FAILED calib ${fams[$i]}"; tail -n 20 "$LOGS/calib_${fams[$i]}.log"; p3=1; fi
done

if [ "$EXPORT" = 1 ]; then
  say "phase 4: export"
  mkdir -p "$WEIGHTS"
  for f in dni adafm ftn cfsnet; do
    [ -f "$RUNS/$f/model.pt" ] || continue
    c=(); [ -f "$RUNS/calib/$f.json" ] && c=(--calib "$RUNS/calib/$f.json")
    $PY tools/export.py --ckpt "$RUNS/$f/model.pt" --base "$B" "${c[@]}" --check \
        -o "$WEIGHTS/denoise-$f-color.safetensors" 2>&1 | tee -a "$LOGS/export.log" || { say "FAILED export $f"; p3=1; }
  done
fi
say "phases: phase2 failed=$p2 calib/export failed=$p3"
[ $p2 = 0 ] && [ $p3 = 0 ]
