#!/usr/bin/env bash
# Builds the page in tools/web/: the library for wasm32 (feature `web`: wgpu's WebGPU
# backend, the CPU executors without threads), then its JavaScript bindings into
# tools/web/pkg/ (generated, not committed). wasm-bindgen-cli must be exactly the version of
# the wasm-bindgen crate in Cargo.lock; it is installed with `cargo install` when missing or
# at another version.
#
# Serve the repository root and open the page:
#   python3 -m http.server 8000    # then http://127.0.0.1:8000/tools/web/index.html
set -euo pipefail
cd "$(dirname "$0")/../.."

want=$(awk '$0 == "name = \"wasm-bindgen\"" { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)
if [ -z "$want" ]; then
    echo "build.sh: no wasm-bindgen in Cargo.lock" >&2
    exit 1
fi
have=$(wasm-bindgen --version 2>/dev/null | awk '{ print $2 }' || true)
if [ "$have" != "$want" ]; then
    echo "build.sh: installing wasm-bindgen-cli $want (found: ${have:-none})"
    # --locked first (the tool's own lock file); a registry mirror that lacks one of its locked
    # versions gets the newest compatible ones instead.
    cargo install wasm-bindgen-cli --version "$want" --locked \
        || cargo install wasm-bindgen-cli --version "$want"
fi
if command -v rustup >/dev/null 2>&1 && ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
    rustup target add wasm32-unknown-unknown
fi

# wasm SIMD (every current browser has it) for the CPU fallback; a cdylib, for wasm-bindgen,
# without making the native library one.
CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUSTFLAGS="${CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUSTFLAGS:--C target-feature=+simd128}" \
    cargo rustc --lib --release --target wasm32-unknown-unknown --no-default-features \
    --features web --crate-type cdylib
wasm-bindgen --target web --no-typescript --out-dir tools/web/pkg --out-name tunable \
    "${CARGO_TARGET_DIR:-target}/wasm32-unknown-unknown/release/tunable.wasm"
echo "build.sh: built tools/web/pkg/ ($(du -h tools/web/pkg/tunable_bg.wasm | cut -f1) of wasm)"
