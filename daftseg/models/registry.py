"""One registry of model builders: ``build_model(name)`` is the public entry for every stage."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

_BUILDERS: dict[str, Callable[[], nn.Module]] = {}


def register_model(name: str) -> Callable[[Callable[[], nn.Module]], Callable[[], nn.Module]]:
    def decorator(fn: Callable[[], nn.Module]) -> Callable[[], nn.Module]:
        if name in _BUILDERS:
            raise ValueError(f"model {name!r} is registered twice")
        _BUILDERS[name] = fn
        return fn

    return decorator


def list_models() -> list[str]:
    _import_builders()
    return sorted(_BUILDERS)


def build_model(name: str) -> nn.Module:
    """A randomly initialised model: a ``SamModel`` with ``image_encoder``, ``prompt_encoder``, ``mask_decoder``."""
    _import_builders()
    try:
        builder = _BUILDERS[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; known: {', '.join(sorted(_BUILDERS))}") from None
    return builder()


def _import_builders() -> None:
    # Imported on first use so that `import daftseg.models` stays cheap.
    from daftseg.models import efficientvit_sam, litemedsam  # noqa: F401
