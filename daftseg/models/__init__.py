"""Models: ``build_model(name)`` for ``litemedsam`` and ``efficientvit_sam_l0``."""

from daftseg.models.registry import build_model, list_models, register_model

__all__ = ["build_model", "list_models", "register_model"]
