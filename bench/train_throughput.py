"""Fine-tuning throughput (images/s) of EfficientViT-SAM l0 on one device, model-only and end to end.

For each mode (``fp32``, ``bf16``, ``bf16_cl_compile`` = bf16 + channels-last + torch.compile) it
builds the real training loop (``daftseg.training.loop.Trainer``, the same ``train_step`` the
scripts run: forward, Dice + BCE + IoU-MSE, backward, AdamW step) and measures

- model-only: one batch kept on the device, stepped repeatedly;
- end to end: batches from the DataLoader (synthetic 2D 512x512 files, through the preprocessing
  cache unless ``--no_cache``), copied to the device each step.

Reference (issue 6): the original code on one H200 at batch 96 ran about 190 img/s eager fp32 and
845 img/s with bf16 + channels-last + compile; the original script end to end 150-220 img/s.

    python bench/train_throughput.py -device cuda -batch_size 96 -num_workers 16
    python bench/train_throughput.py -device cpu -batch_size 2 -steps 2 -warmup 1 -modes fp32 -num_workers 0 -n2d 4
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import torch

from daftseg.data.npz_dataset import NpzDataset
from daftseg.data.preprocess_cache import build_cache
from daftseg.data.synthetic import make_case, training_name, write_training_npz
from daftseg.models import build_model
from daftseg.training.config import TrainConfig
from daftseg.training.distributed import init_distributed
from daftseg.training.loop import Trainer
from daftseg.training.tasks import SegmentationTask

MODES = {"fp32": ("none", False, False), "bf16": ("bf16", False, False), "bf16_cl": ("bf16", True, False),
         "bf16_cl_compile": ("bf16", True, True)}
PREFIXES = ("2DBox_Microscope", "2DBox_CT", "2DBox_Endoscopy", "2DBox_OCT")


def make_files(out: Path, n: int) -> list[str]:
    out.mkdir(parents=True, exist_ok=True)
    files = []
    for i in range(n):
        prefix = PREFIXES[i % len(PREFIXES)]
        path = out / training_name(prefix, i + 1)
        if not path.exists():
            write_training_npz(make_case(prefix, index=i + 1, size=512), path)
        files.append(str(path))
    return files


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(mode: str, args: argparse.Namespace, dataset: NpzDataset) -> tuple[float, float]:
    amp, channels_last, compile_ = MODES[mode]
    config = TrainConfig(stage="finetune", device=args.device, batch_size=args.batch_size, amp=amp,
                         channels_last=channels_last, compile=compile_, num_workers=args.num_workers, resume="")
    env = init_distributed(config.device)
    torch.manual_seed(0)
    trainer = Trainer(config, env, SegmentationTask(build_model("efficientvit_sam_l0")), dataset)
    trainer.net.train()

    batches = iter(())
    epoch = 0

    def next_batch():
        nonlocal batches, epoch
        try:
            return next(batches)
        except StopIteration:
            epoch += 1
            trainer.train_sampler.set_epoch(epoch)
            batches = iter(trainer.train_loader)
            return next(batches)

    fixed = trainer.to_device(next_batch())
    for _ in range(args.warmup):
        trainer.train_step(fixed)
    sync(env.device)
    start = time.perf_counter()
    for _ in range(args.steps):
        trainer.train_step(fixed)
    sync(env.device)
    model_only = args.steps * args.batch_size / (time.perf_counter() - start)

    for _ in range(min(args.warmup, 2)):
        trainer.train_step(trainer.to_device(next_batch()))
    sync(env.device)
    start = time.perf_counter()
    for _ in range(args.steps):
        trainer.train_step(trainer.to_device(next_batch()))
    sync(env.device)
    end_to_end = args.steps * args.batch_size / (time.perf_counter() - start)
    return model_only, end_to_end


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("-device", default="cuda")
    p.add_argument("-batch_size", type=int, default=96)
    p.add_argument("-steps", type=int, default=20, help="timed steps per measurement")
    p.add_argument("-warmup", type=int, default=5, help="untimed steps first (compilation happens here)")
    p.add_argument("-num_workers", type=int, default=16)
    p.add_argument("-modes", default="fp32,bf16,bf16_cl_compile", help=f"comma-separated of {', '.join(MODES)}")
    p.add_argument("-n2d", type=int, default=256, help="synthetic 2D training files")
    p.add_argument("-data_dir", default="", help="keep the synthetic files and cache here (default: temporary)")
    p.add_argument("--no_cache", action="store_true", help="read the npz files instead of the cache")
    args = p.parse_args(argv)
    root = Path(args.data_dir) if args.data_dir else Path(tempfile.mkdtemp(prefix="bench_train_"))
    try:
        files = make_files(root / "npz", args.n2d)
        if not args.no_cache:
            build_cache(files, root / "cache", num_workers=max(1, args.num_workers), progress=False)
        dataset = NpzDataset(files, cache_dir=None if args.no_cache else root / "cache")
        device_name = torch.cuda.get_device_name() if args.device.startswith("cuda") else "CPU"
        print(f"{device_name}, batch {args.batch_size}, {args.num_workers} loader workers, "
              f"{'npz' if args.no_cache else 'cache'}, torch {torch.__version__}")
        print("| mode | model-only img/s | end-to-end img/s |\n|---|---|---|")
        for mode in args.modes.split(","):
            model_only, end_to_end = measure(mode, args, dataset)
            print(f"| {mode} | {model_only:.1f} | {end_to_end:.1f} |", flush=True)
            if torch.cuda.is_available():
                torch.cuda.empty_cache()  # the previous mode's model and optimizer are gone
    finally:
        if not args.data_dir:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
