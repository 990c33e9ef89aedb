"""The demo behind ``./demo.sh``: build both models and segment a synthetic image with a box."""

from __future__ import annotations

import time

import numpy as np
import torch

from daftseg.geometry import postprocess_logits, preprocess_image, scale_box_to_256
from daftseg.models import build_model


def main() -> int:
    rng = np.random.default_rng(2024)
    h, w = 300, 400
    image = (rng.normal(60, 10, (h, w, 3))).clip(0, 255).astype(np.uint8)
    image[100:200, 150:300] = 180
    box = np.array([140, 90, 310, 210])
    x, new_hw = preprocess_image(image)
    box256 = scale_box_to_256(box, h, w).astype(np.float32)
    torch.set_grad_enabled(False)
    for name in ("litemedsam", "efficientvit_sam_l0"):
        model = build_model(name).eval()
        t = time.perf_counter()
        logits, iou = model(torch.from_numpy(x), torch.from_numpy(box256)[None, None])
        mask = postprocess_logits(logits[0, 0].numpy(), new_hw, (h, w))
        print(f"{name}: {sum(p.numel() for p in model.parameters()) / 1e6:.1f} M parameters, "
              f"forward {time.perf_counter() - t:.2f} s, mask {mask.shape} with {int(mask.sum())} pixels "
              f"(random weights), IoU head {float(iou):.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
