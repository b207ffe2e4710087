#!/usr/bin/env bash
# Builds what tools/h200_gpu_check.sh runs on the device machine (which has no Rust toolchain
# and no network) and puts it, stripped, in .gpubin/ (git-ignored; about 37 MB, under the 64 MiB
# that `run` carries). Then, from the device tool:
#   run(command="bash tools/h200_gpu_check.sh", carry=[".gl", ".gpubin", ".data/CBSD68"])
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .gpubin
cargo build --release --bin tunable
cp target/release/tunable .gpubin/
# Test and bench binaries: their paths carry a hash; cargo prints them with --no-run.
bin_of() { cargo "$@" --no-run 2>&1 | grep -o 'target/release/deps/[A-Za-z0-9_]*-[0-9a-f]*' | tail -n 1; }
cp "$(bin_of test --release --test gpu_kernels)" .gpubin/gpu_kernels
cp "$(bin_of test --release --test golden)" .gpubin/golden
cp "$(bin_of test --release --test encode)" .gpubin/encode
cp "$(bin_of test --release --test executors)" .gpubin/executors
cp "$(bin_of bench --bench kernels)" .gpubin/kernels
cp "$(bin_of bench --bench modulation)" .gpubin/modulation
strip .gpubin/*
ls -la .gpubin
