"""INT8 image encoders at export time (``onnx2openvino.py --int8``, ``liteov.py --int8``).

``calibration``: the cases an encoder is calibrated and checked on; ``agreement``: the gate that
judges the INT8 candidate's label maps against the ground truth and the standard IR's; ``int8``: NNCF quantisation, the
gate and the atomic write of ``<Name>_image_encoder_int8.xml/.bin/.json``; ``cli``: ``python -m
daftseg.quantize MODELS_DIR``, the same for a folder that already holds the standard IR.

Needs numpy, OpenCV and OpenVINO; NNCF is imported only when a model is quantised, so ``--help`` and
the exporters work without it. No torch.
"""
