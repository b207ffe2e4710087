#!/usr/bin/env bash
# One short session on a real GPU (the H200 lent to some tasks): adapter info, the CBSD68
# evaluation of every shipped model through `tunable eval` on the GPU, the fused-vs-unfused
# bench, and the WGSL kernel + golden tests on the real Vulkan driver.
# Binaries are built on the developer machine by tools/prepare_gpubin.sh and carried in .gpubin;
# CBSD68 is carried in .data/CBSD68. Everything lands in $OUT as one tarball.
# DRY_RUN=1 rehearses it on the developer machine (lavapipe, tiny bench, no CBSD68 evals, no
# unpacking of .gl into /).
set -uo pipefail
DRY=${DRY_RUN:-0}
if [ "$DRY" = 1 ]; then
  export TUNABLE_BENCH_GPU=1; BENCH_SIZES=16; BENCH_ROUNDS=3; KERNEL_SIZES=32
else
  for f in .gl/*.deb; do dpkg -x "$f" /; done; ldconfig
fi
nv=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
[ -f "$nv" ] && export VK_DRIVER_FILES=$nv
egl=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
[ -f "$egl" ] && export __EGL_VENDOR_LIBRARY_FILENAMES=$egl
# The ICD names libGLX_nvidia.so.0 without a path: the driver's mounted folder must be searched
# (an earlier session failed in vk_icdGetInstanceProcAddr, most likely for this).
for d in /usr/local/nvidia/lib64 /usr/local/nvidia/lib; do
  [ -d "$d" ] && export LD_LIBRARY_PATH="$d${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
done
# Diagnostics for the log, in case the adapter still does not come up.
echo "ICD: ${VK_DRIVER_FILES:-none}"; [ -f "$nv" ] && cat "$nv"
ldconfig -p | grep -E "libvulkan|libGLX_nvidia|libEGL_nvidia|libnvidia-glcore" | head
ls /usr/local/nvidia/lib64 2>/dev/null | grep -E "GLX|EGL|vulkan|glcore" | head
export XDG_RUNTIME_DIR=/tmp/xdg; mkdir -p -m 700 "$XDG_RUNTIME_DIR"
# Test binaries find their data through the developer machine's path.
mkdir -p /work; [ -e /work/main ] || ln -s "$PWD" /work/main
B=.gpubin
# Results gather in /tmp/gpucheck and leave as one tarball, also when the time limit hits.
OUTDIR=${OUT:-/tmp/out}; O=/tmp/gpucheck; mkdir -p "$O/eval" "$OUTDIR"
trap 'tar czf "$OUTDIR/gpucheck.tgz" -C "$O" eval' EXIT TERM
T0=$(date +%s); say() { echo "[gpu +$(( $(date +%s) - T0 ))s] $*"; }
export TUNABLE_BACKEND=vulkan
say info; $B/tunable info
# The fused-vs-unfused table first (the one number only a real GPU gives): 256x256 and, where
# the extra dispatches of the unfused form weigh most, 64x64; interleaved rounds, no criterion.
say bench
for size in ${BENCH_SIZES:-256 64}; do
  TUNABLE_BENCH_BACKENDS=gpu TUNABLE_BENCH_SIZE=$size TUNABLE_BENCH_ROUNDS=${BENCH_ROUNDS:-31} TUNABLE_BENCH_TABLE_ONLY=1 \
    timeout 90 $B/modulation --bench 2>&1 | tee -a "$O/eval/bench.txt" | tail -n 9
done
# Per-kernel table (benches/kernels.rs: Winograd and direct rows of the 3x3 conv, 1x1, ...).
say kernels-bench
timeout 120 $B/kernels --bench --sizes ${KERNEL_SIZES:-256,512} --backends gpu \
  2>&1 | tee "$O/eval/kernels_bench.txt" | tail -n 14
say eval
[ "$DRY" = 1 ] || for m in cfsnet adafm ftn dni; do
  $B/tunable eval --model weights/denoise-$m-color.safetensors --data .data/CBSD68 \
     --sigma 20,25,30,40,50,60,70,80 --json "$O/eval/$m.json" | tee "$O/eval/$m.md"
done
say plain
[ "$DRY" = 1 ] || for s in 20 40 60 80; do
  $B/tunable eval --model weights/denoise-plain-sigma$s-color.safetensors --data .data/CBSD68 \
     --sigma 20,25,30,40,50,60,70,80 --json "$O/eval/plain$s.json" | tee "$O/eval/plain$s.md"
done
say kernels
TUNABLE_REQUIRE_GPU=1 timeout 40 $B/gpu_kernels --test-threads 1 --nocapture 2>&1 | tee "$O/eval/kernels.txt" | tail -n 25
say golden
TUNABLE_REQUIRE_GPU=1 timeout 20 $B/golden --nocapture 2>&1 | tee "$O/eval/golden.txt" | tail -n 40
say encode
TUNABLE_REQUIRE_GPU=1 timeout 40 $B/encode --test-threads 1 --nocapture 2>&1 | tee "$O/eval/encode.txt" | tail -n 15
say executors
TUNABLE_REQUIRE_GPU=1 timeout 60 $B/executors --nocapture 2>&1 | tee "$O/eval/executors.txt" | tail -n 5
say done
