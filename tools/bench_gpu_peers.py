#!/usr/bin/env python3
"""The shipped network on one GPU adapter: tunable (WGSL through wgpu) against ncnn's Vulkan,
same weights, same adapter, upload + whole network + readback per run, in interleaved rounds.

    .venv/bin/pip install ncnn pnnx                  # the peers (PyPI wheels; ncnn has Vulkan)
    .venv/bin/python tools/bench_gpu_peers.py        # sizes 64 128, 5 rounds x 5 runs
    .venv/bin/python tools/bench_gpu_peers.py --sizes 64 --rounds 3 --bin target/release/deps/gpu_net-HASH

Engines:
- tunable plain: weights/denoise-plain-sigma20-color.safetensors (`benches/gpu_net.rs`);
- tunable dni: weights/denoise-dni-color.safetensors with its level changed before every run;
- ncnn Vulkan fp32: the plain network converted with pnnx (fp16=False, or it stores fp16
  weights), fp16 storage and arithmetic off, its defaults otherwise (Winograd for 3x3 convs);
- ncnn Vulkan direct: the same with Winograd and sgemm convolution off.
ncnn has no knob: a level change there is a re-export, so it is timed at one level only; the
DNI network at level 0.5 is converted too, for the agreement check.

Agreement first: each peer's output on the bench binary's seeded input (`--check`) against
tunable's, and PyTorch's against both. Timing: each round runs the tunable binary once (every
model and size) and then each ncnn variant on every size; the ratio ncnn time / tunable time is
taken per round and the median printed. The load average is printed before and after: measure
on a quiet machine.

ONNX Runtime's WebGPU EP (PyPI onnxruntime-ep-webgpu) needs a newer lavapipe than Debian 12's
Mesa 22.3 (Dawn requires shaderUniform*ArrayDynamicIndexing); it is not run by this script.
"""

import argparse
import os
import re
import statistics
import subprocess
import sys

import numpy as np
import torch
from safetensors.numpy import load_file

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import bench_peers  # noqa: E402
import nets  # noqa: E402

PLAIN = os.path.join(ROOT, "weights", "denoise-plain-sigma20-color.safetensors")
DNI = os.path.join(ROOT, "weights", "denoise-dni-color.safetensors")


def bench_binary():
    """Builds benches/gpu_net.rs and returns the path of its binary."""
    out = subprocess.run(["cargo", "bench", "--bench", "gpu_net", "--no-run"], cwd=ROOT,
                         capture_output=True, text=True, check=True)
    m = re.search(r"Executable .*?\((.*?gpu_net-[0-9a-f]+)\)", out.stderr + out.stdout)
    if not m:
        sys.exit(f"no gpu_net binary in cargo's output:\n{out.stderr}")
    return os.path.join(ROOT, m.group(1))


def run_tunable(binary, sizes, runs, check=False):
    """One run of the bench binary: {(model, size): (median_s, best_s)} and the adapter line."""
    cmd = [binary, "--sizes", ",".join(map(str, sizes)), "--runs", str(runs)] + (["--check"] if check else [])
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=True).stdout
    res = {}
    for m in re.finditer(r"^RESULT model=(\w+) size=(\d+) median_ms=([\d.]+) best_ms=([\d.]+)", out, re.M):
        res[(m.group(1), int(m.group(2)))] = (float(m.group(3)) / 1e3, float(m.group(4)) / 1e3)
    adapter = re.search(r"^adapter: (.*)$", out, re.M)
    return res, adapter.group(1) if adapter else "unknown"


def ncnn_files(model, size, workdir, tag):
    """The network converted by pnnx for one input size (fp32 weights)."""
    import pnnx
    base = os.path.join(workdir, f"{tag}_{size}")
    param, binf = base + ".ncnn.param", base + ".ncnn.bin"
    if not os.path.exists(param):
        x = torch.rand(1, 3, size, size)
        pnnx.export(model, base + ".pt", (x,), fp16=False, ncnnparam=param, ncnnbin=binf,
                    pnnxparam=base + ".pnnx.param", pnnxbin=base + ".pnnx.bin",
                    pnnxpy=base + "_pnnx.py", pnnxonnx=base + ".pnnx.onnx", ncnnpy=base + "_ncnn.py")
    return param, binf


class NcnnNet:
    def __init__(self, param, binf, winograd=True, threads=2):
        import ncnn
        self.ncnn = ncnn
        net = ncnn.Net()
        o = net.opt
        o.use_vulkan_compute = True
        o.use_fp16_packed = o.use_fp16_storage = o.use_fp16_arithmetic = False
        o.use_bf16_storage = o.use_bf16_packed = False
        if not winograd:
            o.use_winograd_convolution = False
            o.use_winograd23_convolution = o.use_winograd43_convolution = o.use_winograd63_convolution = False
            o.use_sgemm_convolution = False
        o.num_threads = threads
        if net.load_param(param) or net.load_model(binf):
            sys.exit(f"ncnn could not load {param}")
        self.net = net

    def __call__(self, x):
        """x: float32 [3, H, W] -> [3, H, W]; upload, run, download."""
        ex = self.net.create_extractor()
        ex.input("in0", self.ncnn.Mat(np.ascontiguousarray(x)))
        rc, out = ex.extract("out0")
        if rc:
            sys.exit(f"ncnn extract failed ({rc})")
        return np.array(out)


def time_fn(fn, runs):
    """(median, best) seconds of `runs` timed calls after two untimed ones (bench_peers' timer)."""
    ts = bench_peers.time_fn(fn, runs)
    return statistics.median(ts), min(ts)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 128])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--runs", type=int, default=5, help="timed runs per engine, size and round")
    ap.add_argument("--bin", help="the gpu_net bench binary (default: cargo bench --no-run)")
    ap.add_argument("--threads", type=int, default=2, help="ncnn CPU threads (for its host side)")
    ap.add_argument("--tol", type=float, default=1e-3, help="largest difference allowed in the check (0..1 scale)")
    a = ap.parse_args()

    binary = a.bin or bench_binary()
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    _, adapter = run_tunable(binary, a.sizes, 1, check=True)
    ref = load_file(os.path.join(ROOT, "target", "gpu_net_check.safetensors"))
    plain = nets.from_tunable_file(PLAIN, "base").eval()
    dni_half = nets.from_tunable_file(DNI, "base", mix_alpha=0.5).eval()
    workdir = os.path.join(ROOT, "target", "gpu_peers")
    os.makedirs(workdir, exist_ok=True)

    engines = {}  # (name, size) -> callable on [3, H, W]
    for s in a.sizes:
        x = ref[f"input_{s}"]
        for tag, model in (("plain", plain), ("dni", dni_half)):
            with torch.inference_mode():
                y_torch = model(torch.from_numpy(x))[0].numpy()
            ours = ref[f"{tag}_{s}"][0]
            print(f"check {tag} {s}x{s}: max |pytorch - tunable| = {np.abs(y_torch - ours).max():.3g}")
            param, binf = ncnn_files(model, s, workdir, tag)
            for variant, wino in (("ncnn Vulkan fp32", True), ("ncnn Vulkan fp32 direct", False)):
                net = NcnnNet(param, binf, winograd=wino, threads=a.threads)
                d = float(np.abs(net(x[0]) - ours).max())
                print(f"check {tag} {s}x{s}: max |{variant} - tunable| = {d:.3g}")
                if d > a.tol:
                    sys.exit(f"{variant} does not reproduce tunable's output ({d:.3g} > {a.tol})")
                if tag == "plain":
                    engines[(variant, s)] = net

    names = ["tunable plain", "tunable dni (level changed every run)", "ncnn Vulkan fp32", "ncnn Vulkan fp32 direct"]
    med = {(n, s): [] for n in names for s in a.sizes}
    best = {(n, s): [] for n in names for s in a.sizes}
    for r in range(a.rounds):
        res, _ = run_tunable(binary, a.sizes, a.runs)
        for s in a.sizes:
            for n, key in ((names[0], "plain"), (names[1], "dni")):
                m, b = res[(key, s)]
                med[(n, s)].append(m)
                best[(n, s)].append(b)
            x = ref[f"input_{s}"][0]
            for n in names[2:]:
                m, b = time_fn(lambda: engines[(n, s)](x), a.runs)
                med[(n, s)].append(m)
                best[(n, s)].append(b)
        print(f"round {r + 1}/{a.rounds} done", file=sys.stderr)
    print(f"load average after: {os.getloadavg()[0]:.2f}")

    print()
    print(f"adapter: {adapter}; {a.rounds} rounds x {a.runs} runs; upload + network + readback per run")
    print()
    print("| engine | " + " | ".join(f"{s}x{s} ms (median)" for s in a.sizes) + " | "
          + " | ".join(f"{s}x{s}: its time / tunable plain" for s in a.sizes) + " |")
    print("|---|" + "---|" * (2 * len(a.sizes)))
    for n in names:
        times = [f"{statistics.median(med[(n, s)]) * 1e3:.1f}" for s in a.sizes]
        ratios = [statistics.median(t / p for t, p in zip(med[(n, s)], med[(names[0], s)])) for s in a.sizes]
        print(f"| {n} | " + " | ".join(times) + " | " + " | ".join(f"{v:.2f}" for v in ratios) + " |")
    print()
    print("ncnn / tunable, median of per-round ratios (>= 1.0: tunable is at least as fast):")
    for s in a.sizes:
        for ours in names[:2]:
            rs = [n / t for n, t in zip(med[("ncnn Vulkan fp32", s)], med[(ours, s)])]
            print(f"  {s}x{s} {ours}: {statistics.median(rs):.2f} (rounds: {', '.join(f'{v:.2f}' for v in rs)})")


if __name__ == "__main__":
    main()
