"""PyTorch -> ONNX -> OpenVINO IR with DAFT's file and tensor names, each step checked numerically.

- ``specs``: the three graphs' file suffixes, tensor names, shapes, dynamic axes (no torch);
- ``graphs``: the wrapper modules that trace them;
- ``onnx_export``: ``export_model`` and the ``export_onnx.py`` CLI (checked with ONNX Runtime);
- ``openvino_convert``: ONNX -> IR and the ``onnx2openvino.py`` CLI (imports no torch);
- ``openvino_direct``: PyTorch -> IR without ONNX (``liteov.py --direct``);
- ``lite``: the ``liteov.py`` CLI for LiteMedSAM;
- ``runners``, ``files``: running graphs and comparing outputs; atomic writes.

Nothing is imported here, so ``import daftseg.export`` stays cheap; onnx, onnxruntime and
openvino are imported inside the functions that need them.
"""
