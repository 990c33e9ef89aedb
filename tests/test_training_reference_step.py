"""Two real training steps of the package against an independent transcription of the original's
step (tests/reference/original_train_step.py): EfficientViT-SAM l0 fine-tuning, and the l0
student distilled from the real TinyViT teacher, at 256x256 on one fixed batch.

Same initial weights on both sides; losses and every updated tensor must agree to 1e-6 relative.
"""

from __future__ import annotations

import copy

import torch
from reference import original_train_step as original
from training_support import few_threads  # noqa: F401 - autouse fixture

from daftseg.models import build_model
from daftseg.training.cli import parse_config
from daftseg.training.distributed import DistEnv
from daftseg.training.loop import Trainer
from daftseg.training.tasks import DistillationTask, SegmentationTask

RTOL = 1e-6
BATCH = 2


def fixed_batch() -> dict[str, torch.Tensor]:
    """Two 256x256 images in [0, 1] with a bright rectangle each, its mask and a jittered box."""
    g = torch.Generator().manual_seed(7)
    image = torch.rand(BATCH, 3, 256, 256, generator=g) * 0.3
    gt = torch.zeros(BATCH, 1, 256, 256, dtype=torch.long)
    boxes = torch.zeros(BATCH, 1, 1, 4)
    for i, (x0, y0, x1, y1) in enumerate([(40, 60, 120, 150), (130, 20, 230, 90)]):
        image[i, :, y0:y1 + 1, x0:x1 + 1] += 0.6
        gt[i, 0, y0:y1 + 1, x0:x1 + 1] = 1
        boxes[i, 0, 0] = torch.tensor([x0 - 3, y0 - 2, x1 + 4, y1 + 1], dtype=torch.float32)
    return {"image": image, "gt2D": gt, "bboxes": boxes}


def package_steps(task, stage: str, batch: dict[str, torch.Tensor], steps: int = 2) -> list[float]:
    config = parse_config(stage, ["-device", "cpu", "-num_workers", "0", "-batch_size", str(BATCH),
                                  "-resume", ""], world_size=1)
    trainer = Trainer(config, DistEnv(0, 1, 0, torch.device("cpu")), task, train_set=[0] * BATCH)
    trainer.net.train()
    return [float(trainer.train_step(trainer.to_device(batch))) for _ in range(steps)]


def relative_differences(ours: dict[str, torch.Tensor], theirs: dict[str, torch.Tensor]) -> dict[str, float]:
    """max |ours - theirs| / max |theirs| per floating-point tensor."""
    assert ours.keys() == theirs.keys()
    out = {}
    for k, ref in theirs.items():
        if ref.is_floating_point():
            scale = ref.abs().max().item() or 1.0
            out[k] = (ours[k] - ref).abs().max().item() / scale
        else:
            assert torch.equal(ours[k], ref), k  # e.g. BatchNorm's num_batches_tracked
    return out


def check(ours_losses, ref_losses, ours_state, ref_state, label: str) -> None:
    loss_rel = [abs(a - b) / abs(b) for a, b in zip(ours_losses, ref_losses)]
    diffs = relative_differences(ours_state, ref_state)
    worst = max(diffs, key=diffs.get)
    print(f"{label}: losses ours {ours_losses} original {ref_losses}, relative differences {loss_rel}; "
          f"weights: worst relative difference {diffs[worst]:.2e} ({worst}) over {len(diffs)} tensors")
    assert max(loss_rel) <= RTOL
    assert diffs[worst] <= RTOL


def _moved(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor], word: str) -> list[str]:
    return [k for k in before if word in k and not torch.equal(before[k], after[k])]


def test_finetuning_two_steps_match_the_original():
    torch.manual_seed(0)
    model = build_model("efficientvit_sam_l0")
    reference = copy.deepcopy(model)
    start = copy.deepcopy(model.state_dict())
    batch = fixed_batch()
    ours = package_steps(SegmentationTask(model), "finetune", batch)
    dice = []
    theirs = original.finetune_steps(reference, batch["image"], batch["gt2D"], batch["bboxes"], dice_check=dice)
    print("Dice, transcribed MONAI 1.3.0 vs installed MONAI:", dice)
    assert all(abs(a - b) <= RTOL * abs(b) for a, b in dice)
    check(ours, theirs, model.state_dict(), reference.state_dict(), "fine-tuning")
    after = model.state_dict()
    assert _moved(start, after, "running_mean") and _moved(start, after, "running_var")  # BatchNorm in train mode
    assert not _moved(start, after, "prompt_encoder.")  # frozen, not even weight-decayed
    assert _moved(start, after, "mask_decoder.") and _moved(start, after, "image_encoder.")


def test_distillation_two_steps_match_the_original():
    torch.manual_seed(1)
    student = build_model("efficientvit_sam_l0").image_encoder
    teacher = build_model("litemedsam").image_encoder
    ref_student, ref_teacher = copy.deepcopy(student), copy.deepcopy(teacher)
    student_start = copy.deepcopy(student.state_dict())
    teacher_start = copy.deepcopy(teacher.state_dict())
    batch = fixed_batch()
    ours = package_steps(DistillationTask(student, teacher), "distill", batch)
    theirs = original.distill_steps(ref_student, ref_teacher, batch["image"])
    check(ours, theirs, student.state_dict(), ref_student.state_dict(), "distillation")
    # the student's BatchNorm statistics move; the frozen teacher's (eval mode) do not
    assert _moved(student_start, student.state_dict(), "running_mean")
    assert any("running_mean" in k for k in teacher_start)
    for k, v in teacher.state_dict().items():
        assert torch.equal(v, teacher_start[k]), k
    assert all(not p.requires_grad for p in teacher.parameters())
