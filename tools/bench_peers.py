#!/usr/bin/env python3
"""Times the CPU benchmark network (AdaFM-Net-style, 48 ch x 8 blocks, 44.85 GFLOP at 512x512)
in PyTorch eager and ONNX Runtime (CPU EP), with the same weights as the Rust fast executor,
and (with --rust) the Rust bench in the same sitting, interleaved round by round so that all
three see the same machine load. Prints a markdown table.

    cargo bench --bench cpu_net -- --export-only      # writes target/bench_net.safetensors
    .venv/bin/python tools/bench_peers.py --rust       # torch + ORT + Rust, 256 and 512
    .venv/bin/python tools/bench_peers.py --rust --rust-bin target/release/deps/cpu_net-HASH
    .venv/bin/python tools/bench_peers.py --rust --model weights/denoise-color.safetensors --sigma 25
    .venv/bin/python tools/bench_peers.py --rust --avx2     # also the AVX2 kernel, same sitting

--model runs a shipped model's graph instead of the bench network (the Rust bench mixes its
convs at --sigma and exports them to target/bench_model.safetensors, which PyTorch and ONNX
Runtime then load), so the table holds for the model users run. --avx2 adds the Rust bench
with TUNABLE_FAST_KERNEL=avx2 (the kernel before AVX-512) to every round.

The weights file holds every conv's weight/bias at the bench level (PyTorch layout) and a
64x64 check pair (`check.input` -> `check.output`, computed by the Rust executor): the script
first checks that PyTorch reproduces the Rust output.

--golden DIR writes golden vectors for tests/fast_cpu.rs (`golden_pytorch_vectors`): PyTorch
outputs on seeded inputs, as safetensors with `input`, `expected` and the plan/level metadata.
"""

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.numpy import load_file, save_file
from safetensors import safe_open

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GFLOP_512 = 44.85


class Net(torch.nn.Module):
    def __init__(self, w, long_skip=False):
        super().__init__()
        self.long_skip = long_skip  # the shipped models add the head's output after the blocks

        def conv(name):
            weight = torch.from_numpy(w[f"{name}.weight"])
            c = torch.nn.Conv2d(weight.shape[1], weight.shape[0], weight.shape[2], padding=weight.shape[2] // 2)
            c.weight.data.copy_(weight)
            c.bias.data.copy_(torch.from_numpy(w[f"{name}.bias"]))
            return c

        blocks = sorted({int(m.group(1)) for k in w for m in [re.match(r"body\.(\d+)\.", k)] if m})
        self.head = conv("head")
        self.body = torch.nn.ModuleList(
            torch.nn.ModuleList([conv(f"body.{i}.conv1"), conv(f"body.{i}.conv2")]) for i in blocks
        )
        self.tail = conv("tail")

    def forward(self, x):
        h0 = self.head(F.pixel_unshuffle(x, 2))
        h = h0
        for c1, c2 in self.body:
            h = c2(F.relu(c1(h))) + h
        if self.long_skip:
            h = h + h0
        return F.pixel_shuffle(self.tail(h), 2) + x


def bench_input(size):
    g = torch.Generator().manual_seed(size)
    return torch.rand(1, 3, size, size, generator=g)


def time_fn(fn, runs):
    fn()
    fn()
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return times


def rust_bench(binary):
    """The command line of the Rust bench (its binary, or through cargo), before its flags."""
    return [binary] if binary else ["cargo", "bench", "--bench", "cpu_net", "--"]


def rust_round(sizes, binary=None, direct=False, model=None, sigma=None, kernel=None):
    """One run of the Rust bench (--quick); returns {size: [median_s, best_s]}."""
    cmd = rust_bench(binary) + ["--quick"]
    if direct:
        cmd.append("--direct")
    if model:
        cmd += ["--model", model, "--sigma", str(sigma)]
    env = dict(os.environ)
    if kernel:
        env["TUNABLE_FAST_KERNEL"] = kernel
    out = subprocess.run(
        cmd,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    out = out.stdout + out.stderr
    res = {}
    for m in re.finditer(r"^RESULT size=(\d+) median_ms=([\d.]+) best_ms=([\d.]+)", out, re.M):
        res[int(m.group(1))] = (float(m.group(2)) / 1e3, float(m.group(3)) / 1e3)
    missing = [s for s in sizes if s not in res]
    if missing:
        sys.exit(f"Rust bench printed no RESULT for {missing}:\n{out}")
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", default=os.path.join(ROOT, "target", "bench_net.safetensors"))
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=5, help="timed runs per size per round")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds (torch, ORT, Rust)")
    ap.add_argument("--rust", action="store_true", help="also run the Rust bench in each round")
    ap.add_argument("--rust-bin", help="the cpu_net bench binary to run (default: cargo bench)")
    ap.add_argument("--golden", metavar="DIR", help="write golden vectors for tests/fast_cpu.rs and exit")
    ap.add_argument("--model", help="a model file: time its graph at --sigma instead of the bench network")
    ap.add_argument("--sigma", type=float, default=25.0)
    ap.add_argument("--avx2", action="store_true", help="also the Rust bench on the AVX2 kernel")
    args = ap.parse_args()
    if args.model:
        args.model = os.path.abspath(args.model)
        if args.weights == ap.get_default("weights"):
            args.weights = os.path.join(ROOT, "target", "bench_model.safetensors")
        # The Rust bench writes the model's mixed weights (and the check pair) first.
        subprocess.run(rust_bench(args.rust_bin) + ["--export-only", "--model", args.model, "--sigma", str(args.sigma)],
                       cwd=ROOT, check=True)

    if not os.path.exists(args.weights):
        sys.exit(f"{args.weights} missing: run `cargo bench --bench cpu_net -- --export-only` first")
    w = load_file(args.weights)
    with safe_open(args.weights, "np") as f:
        meta = f.metadata()
    torch.set_num_threads(args.threads)
    net = Net(w, meta.get("long_skip") == "true").eval()

    with torch.inference_mode():
        y = net(torch.from_numpy(w["check.input"])[None])[0].numpy()
    diff = float(np.abs(y - w["check.output"]).max())
    print(f"check: max |pytorch - rust| on the 64x64 pair = {diff:.3g}")
    if diff > 1e-3:
        sys.exit("PyTorch does not reproduce the Rust network: weights or structure differ")

    if args.golden:
        os.makedirs(args.golden, exist_ok=True)
        plan = f"adafm_net:{meta['channels']}:{meta['blocks']}:{meta['seed']}"
        for h, wd in [(64, 64), (38, 50)]:
            x = torch.rand(3, h, wd, generator=torch.Generator().manual_seed(h * 1000 + wd))
            with torch.inference_mode():
                exp = net(x[None])[0]
            path = os.path.join(args.golden, f"adafm_net_{h}x{wd}.safetensors")
            save_file(
                {"input": x.numpy().copy(), "expected": exp.numpy().copy()},
                path,
                metadata={"plan": plan, "level": meta["level"]},
            )
            print(f"wrote {path}")
        return

    import onnxruntime as ort

    onnx_path = os.path.join(tempfile.gettempdir(), "bench_net.onnx")
    torch.onnx.export(
        net,
        (bench_input(64),),
        onnx_path,
        input_names=["x"],
        output_names=["y"],
        dynamic_axes={"x": {2: "h", 3: "w"}, "y": {2: "h", 3: "w"}},
        opset_version=17,
        dynamo=False,
    )
    so = ort.SessionOptions()
    so.intra_op_num_threads = args.threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(onnx_path, so, providers=["CPUExecutionProvider"])
    xo = w["check.input"][None]
    diff = float(np.abs(sess.run(None, {"x": xo})[0][0] - w["check.output"]).max())
    print(f"check: max |onnxruntime - rust| on the 64x64 pair = {diff:.3g}")

    rust_variants = [("rust", False, None), ("rust-direct", True, None)]
    if args.avx2:
        rust_variants.append(("rust-avx2", False, "avx2"))
    times = {(e, s): [] for e in ("pytorch", "onnxruntime", *(v[0] for v in rust_variants)) for s in args.sizes}
    round_medians = {key: [] for key in times}  # one median per round, for per-round ratios
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    for r in range(args.rounds):
        for s in args.sizes:
            x = bench_input(s)
            with torch.inference_mode():
                t = time_fn(lambda: net(x), args.runs)
            times[("pytorch", s)] += t
            round_medians[("pytorch", s)].append(statistics.median(t))
            xn = x.numpy()
            t = time_fn(lambda: sess.run(None, {"x": xn}), args.runs)
            times[("onnxruntime", s)] += t
            round_medians[("onnxruntime", s)].append(statistics.median(t))
        if args.rust:
            for e, direct, kernel in rust_variants:
                res = rust_round(args.sizes, args.rust_bin, direct, args.model, args.sigma, kernel)
                for s, (med, best) in res.items():
                    if s in args.sizes:
                        times[(e, s)] += [med, best]
                        round_medians[(e, s)].append(med)
        print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)
    print(f"load average after: {os.getloadavg()[0]:.2f}")

    print()
    print(f"torch {torch.__version__}, onnxruntime {ort.__version__}, {args.threads} threads, "
          f"{args.rounds} rounds x {args.runs} runs; median (best) ms; "
          f"network: {args.model + f' at sigma {args.sigma:g}' if args.model else 'the bench net'}")
    print()
    print("| engine | size | GFLOP | ms (median) | ms (best) | GFLOP/s (median) |")
    print("|---|---|---|---|---|---|")
    engines = [v[0] for v in rust_variants] + ["pytorch", "onnxruntime"] if args.rust else ["pytorch", "onnxruntime"]
    for e in engines:
        for s in args.sizes:
            t = times[(e, s)]
            if e.startswith("rust"):  # [median, best] per round
                med, best = statistics.median(t[0::2]), min(t[1::2])
            else:
                med, best = statistics.median(t), min(t)
            gflop = GFLOP_512 * (s / 512) ** 2
            name = {
                "rust": "Rust fast (tunable, Winograd)",
                "rust-avx2": "Rust fast (tunable, Winograd, AVX2 kernel)",
                "rust-direct": "Rust fast (tunable, direct only)",
                "pytorch": "PyTorch eager",
                "onnxruntime": "ONNX Runtime CPU",
            }[e]
            print(f"| {name} | {s}x{s} | {gflop:.2f} | {med * 1e3:.1f} | {best * 1e3:.1f} | {gflop / med:.1f} |")
    if args.rust:
        print()
        print("ONNX Runtime time / tunable (Winograd) time, median of per-round ratios:")
        for s in args.sizes:
            ratios = [o / t for o, t in zip(round_medians[("onnxruntime", s)], round_medians[("rust", s)])]
            print(f"  {s}x{s}: {statistics.median(ratios):.2f} (rounds: {', '.join(f'{x:.2f}' for x in ratios)})")
        if args.avx2:
            print("AVX2 kernel time / AVX-512 kernel time, median of per-round ratios:")
            for s in args.sizes:
                ratios = [a / t for a, t in zip(round_medians[("rust-avx2", s)], round_medians[("rust", s)])]
                print(f"  {s}x{s}: {statistics.median(ratios):.2f} (rounds: {', '.join(f'{x:.2f}' for x in ratios)})")


if __name__ == "__main__":
    main()
