"""Data: challenge npz I/O and converters, synthetic cases, and the training data pipeline.

Training side: ``file_lists`` (CSV file lists, ``-data_subset``), ``npz_dataset`` (the training
datasets), ``preprocess_cache`` (the 256-px slice cache) and ``splits`` (train/val split builder).
Nothing is imported here, so ``import daftseg.data`` stays cheap; import the submodules directly.
"""
