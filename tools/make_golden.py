"""Golden vectors for tests/golden.rs: one small random-weight model per family and its PyTorch outputs.

    .venv/bin/python tools/make_golden.py [-o tests/data/golden] [--seed 0] [--check]

For every family (plain, dni, adafm k=3, adafm k=1, ftn, cfsnet, dynamic, basis with 2 axes,
ffdnet, dncnn) this builds a small network from tools/nets.py (8 channels, 2 residual blocks or a
depth-4 stack), perturbs every parameter with ``randomize_`` (so identity / zero initialisations
such as AdaFM's identity kernel, FTN's identity 1x1s and Dynamic-Net's zero last conv are not
trivially the identity), and writes

- ``<out>/<family>.safetensors``: the model in the docs/FORMAT.md format, via ``export.export``;
- ``<out>/<family>_io.safetensors``: tensors ``input`` ``[1, C, H, W]`` (uniform [0, 1], H = 14,
  W = 10) and ``outputs`` ``[L, C, H, W]`` (float32), and metadata ``levels`` (a list of
  L level vectors, one value per axis of the file; ``[]`` for plain/dncnn), ``family``, ``model``
  (the model file's name), ``seed``, all in one JSON object under the metadata key ``golden``.

The outputs come from the PyTorch MODULE forward (``model(x, alpha)``, ``model(x, [l0, l1])``,
``model(x, sigma)``), evaluated in float64 and rounded to float32, not from ``export.run_spec``:
the golden data is independent of the format writer and of its interpreter. Levels are the axis
values the engine receives (no calibration): alpha in {0, 0.3, 0.7, 1} (cfsnet also -0.25 and
1.5, it extrapolates), basis [l0, l1] pairs, ffdnet sigma in {0, 15, 50} (its axis is sigma on the
0..255 scale; the network sees sigma / 255).

Deterministic: the weights come from the seed (``torch.manual_seed(seed + i)`` before construction,
``randomize_(model, seed + i)`` after), the input from ``seed``. ``--check`` also runs
``export.run_spec`` on the written files and prints its largest difference from the module
(a self-test of the exporter; not stored).
"""
import argparse
import json
import os
import sys

import torch
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nets  # noqa: E402
from export import export, load_file, run_spec  # noqa: E402

H, W, C = 14, 10, 3
ALPHAS = [[0.0], [0.3], [0.7], [1.0]]

# name -> (builder(), levels, call(model, x, level_vector))
def _alpha_call(m, x, lv):
    return m(x, lv[0])


def _plain_call(m, x, lv):
    return m(x)


def _base():
    return nets.Backbone(channels=8, blocks=2, in_ch=C)


FAMILIES = {
    "plain": (_base, [[]], _plain_call),
    "dni": (lambda: nets.make_family("dni", _base()), ALPHAS, _alpha_call),
    "adafm": (lambda: nets.make_family("adafm", _base(), adafm_k=3), ALPHAS, _alpha_call),
    "adafm_k1": (lambda: nets.make_family("adafm", _base(), adafm_k=1), ALPHAS, _alpha_call),
    "ftn": (lambda: nets.make_family("ftn", _base()), ALPHAS, _alpha_call),
    "cfsnet": (lambda: nets.make_family("cfsnet", _base()), ALPHAS + [[-0.25], [1.5]], _alpha_call),
    "dynamic": (lambda: nets.make_family("dynamic", _base()), ALPHAS, _alpha_call),
    "basis": (lambda: nets.BasisDnCNN(in_ch=C, channels=8, depth=4, axes=2),
              [[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.3, 0.8], [1.0, 1.0]], lambda m, x, lv: m(x, lv)),
    "ffdnet": (lambda: nets.FFDNet(in_ch=C, channels=8, depth=4), [[0.0], [15.0], [50.0]], _alpha_call),
    "dncnn": (lambda: nets.DnCNN(in_ch=C, channels=8, depth=4), [[]], _plain_call),
}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-o", "--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..",
                                                      "tests", "data", "golden"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--check", action="store_true", help="also compare export.run_spec to the module")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    torch.use_deterministic_algorithms(True)
    x = torch.rand(1, C, H, W, generator=torch.Generator().manual_seed(a.seed))
    for i, (fam, (build, levels, call)) in enumerate(FAMILIES.items()):
        torch.manual_seed(a.seed + 1000 + i)
        model = build()
        nets.randomize_(model, seed=a.seed + i)
        model.eval()
        path = os.path.join(a.out, f"{fam}.safetensors")
        spec = export(model, path, name=f"golden-{fam}", task="denoise")
        n_axes = len(spec["levels"])
        assert all(len(lv) == n_axes for lv in levels), fam
        m64 = model.double()
        with torch.no_grad():
            outs = torch.cat([call(m64, x.double(), lv) for lv in levels]).float()
        # one metadata key: safetensors writes a multi-key map in hash order (not reproducible)
        meta = {"golden": json.dumps({"levels": levels, "family": spec["family"], "model": os.path.basename(path),
                                      "seed": a.seed})}
        save_file({"input": x.contiguous(), "outputs": outs.contiguous()},
                  os.path.join(a.out, f"{fam}_io.safetensors"), metadata=meta)
        msg = f"{fam:9s} family {spec['family']:8s} {len(spec['nodes']):3d} nodes, {len(levels)} levels, " \
              f"out range [{outs.min().item():.3f}, {outs.max().item():.3f}]"
        if a.check:
            s2, T = load_file(path)
            with torch.no_grad():
                got = torch.cat([run_spec(s2, T, x, lv) for lv in levels])
            msg += f", max |run_spec - module| = {(got - outs).abs().max().item():.2e}"
            # the module at level a vs level 0 must differ (the knob is not a no-op)
            if len(levels) > 1:
                msg += f", max |out(l_last) - out(l_0)| = {(outs[-1] - outs[0]).abs().max().item():.2e}"
        print(msg)


if __name__ == "__main__":
    main()
