"""DAFT's training recipe as data: ``configs/recipe_*.toml`` -> the chain of stage commands.

``python -m daftseg.recipe RECIPE --data_root ... --out RUN_DIR`` checks the inputs, then prints
(``--dry-run``), runs (``--local``) or writes Slurm jobs for (``--slurm``) every stage:
distillation -> modelmerge -> general fine-tuning -> extract_evit -> DAFT -> extract_evit ->
export -> the routing table next to ``openvinomodels/``. See ``daftseg.recipe.cli``. Also here:
``shipped_lists`` (93f1e55's own file lists), ``prepare_916bd4e`` (916bd4e's data preparation),
``select_files`` and ``finish`` (stages of the chain).
"""
