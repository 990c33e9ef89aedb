"""DAFT's training recipe as data: ``configs/recipe_*.toml`` -> the chain of stage commands.

``python -m daftseg.recipe RECIPE --data_root ... --out RUN_DIR`` prints (``--dry-run``), runs
(``--local``) or writes Slurm jobs for (``--slurm``) every stage: distillation -> modelmerge ->
general fine-tuning -> extract_evit -> DAFT -> extract_evit -> export. See ``daftseg.recipe.cli``.
"""
