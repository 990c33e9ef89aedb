"""Training: losses, the one DDP-aware loop, and the three stage runners.

Entry points: ``daftseg.training.distill.main``, ``daftseg.training.finetune.main`` and
``daftseg.training.finetune3d.main`` (the root scripts call them). Nothing is imported here.
"""
