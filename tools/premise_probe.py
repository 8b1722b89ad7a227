"""Exploration for issue 14: what decides LaRE's premise in the mini world?

On the committed mini weights and the shipped corpus's test photos, it measures the t=200
single-step loss (LaRE's quantity, pooled) of

* real 64 px windows cut at four scales (test photos downscaled to a 96/192/384 px short side,
  or as stored), beside the world's multi-scale crops, and
* each LDM's own samples under several samplers (CFG 1-3; DDIM 25 and 50 steps, eta 0; 5 steps,
  eta 1),

and prints the premise AUC ("lower loss => generated") of every sampler against every real
scale, with a smoothness measure (mean |Laplacian|) of each set. Results: premise_probe.json
(beside this script when run as ``python tools/premise_probe.py [N] [OUT]``; 2 x 20 min on one core
at N=256). Exploration only: notebook 00 will carry the study once the world is retrained.
"""
import json, sys, time
from pathlib import Path
import numpy as np, torch
from PIL import Image
from lare2lib.core.profiles import get_profile
from lare2lib.world.build import load_world
from lare2lib.world.photos import find_photos, downscaled, CLASS_NAMES
from lare2lib.world.recipes import GeneratorSpec
from lare2lib.world.sampling import sample_images, single_step_loss
from lare2lib.eval.metrics import rank_auc

torch.set_num_threads(1)
profile = get_profile("mini")
world = load_world(profile, progress=False)
N = int(sys.argv[1]) if len(sys.argv) > 1 else 256

def hf(pixels):  # mean |Laplacian| of luminance, a smoothness measure
    x = pixels.float().mean(1, keepdim=True) / 255
    k = torch.tensor([[0, 1, 0], [1, -4, 1], [0, 1, 0]], dtype=torch.float32).view(1, 1, 3, 3)
    return torch.nn.functional.conv2d(x, k).abs().mean(dim=(1, 2, 3))

def windows(short_side, per_photo=24, size=64, seed=0):
    rows = []
    g = np.random.default_rng(seed)
    for p in find_photos():
        if p.split != "test": continue
        im = downscaled(p, short_side) if short_side else Image.open(p.path).convert("RGB")
        for k in range(per_photo):
            l = int(g.integers(0, im.width - size + 1)); t = int(g.integers(0, im.height - size + 1))
            rows.append((np.asarray(im.crop((l, t, l + size, t + size))), CLASS_NAMES.index(p.category), f"{p.photo_id}@{short_side}#{k}"))
    a, c, i = zip(*rows)
    return torch.from_numpy(np.stack(a)).permute(0, 3, 1, 2).contiguous(), torch.tensor(c), list(i)

out = {}
for ldm in ("kl_ldm", "vq_ldm"):
    ae, unet, prompts, scale = world.ldm(ldm)
    def loss(px, cls, ids):
        return single_step_loss(ae, unet, prompts, scale, px, cls, ids, 200, seed=0).numpy()
    reals = {}
    r = world.real["test"]
    reals["world_crops"] = (loss(r.pixels, r.class_index, r.ids), float(hf(r.pixels).mean()))
    for s in (96, 192, 384, 0):
        px, c, ids = windows(s)
        reals[f"window64@{s or 'stored'}"] = (loss(px, c, ids), float(hf(px).mean()))
    for guidance in (1.0, 1.5, 2.0, 3.0):
        for steps, eta in ((25, 0.0), (5, 1.0), (50, 0.0)):
            if ldm == "vq_ldm" and (steps, eta) != (25, 0.0): continue
            t0 = time.time()
            spec = GeneratorSpec(f"p{guidance}-{steps}-{eta}", ldm, steps, eta, guidance)
            cls = torch.arange(N) % 5
            px = sample_images(ae, unet, prompts, scale, cls, spec, 0)
            fl = loss(px, cls, [f"g/{k}" for k in range(N)])
            row = {"gen_loss": float(fl.mean()), "gen_hf": float(hf(px).mean()), "secs": time.time() - t0}
            for name, (rl, rhf) in reals.items():
                row[f"auc_vs_{name}"] = rank_auc(-rl, -fl)
            out[f"{ldm} g={guidance} steps={steps} eta={eta}"] = row
            print(f"{ldm} g={guidance} steps={steps} eta={eta}", json.dumps({k: round(v, 3) for k, v in row.items()}), flush=True)
    for name, (rl, rhf) in reals.items():
        out[f"{ldm} real {name}"] = {"loss": float(rl.mean()), "hf": rhf, "n": len(rl)}
        print(ldm, "real", name, "loss", round(float(rl.mean()), 4), "hf", round(rhf, 4), flush=True)
target = sys.argv[2] if len(sys.argv) > 2 else str(Path(__file__).with_name("premise_probe.json"))
with open(target, "w") as handle:
    json.dump(out, handle, indent=1)
