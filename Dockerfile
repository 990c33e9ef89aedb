# Challenge container: OpenVINO inference only (numpy, OpenCV, OpenVINO; no torch).
# Build and save with ./build_docker_openvino.sh. The harness runs one container per case:
#   docker container run -m 8G --rm -v $PWD/inputs/:/workspace/inputs/ \
#       -v $PWD/outputs/:/workspace/outputs/ <image> /bin/bash -c "sh predict.sh"
FROM python:3.11-slim

# Keeps pip's download cache out of the image layers.
ARG PIP_NO_CACHE_DIR=1
# GLIBC_TUNABLES: malloc asks for transparent huge pages on its large mappings (where the kernel
# allows them: THP "madvise" or "always"), so OpenVINO's buffers take ~35% fewer page faults;
# measured on 2 cores: a 2D case ~40 ms faster, the 120-slice CT 5 MB larger (433 MB).
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    GLIBC_TUNABLES=glibc.malloc.hugetlb=1 \
    PATH="/home/user/.local/bin:${PATH}"

RUN groupadd --gid 1000 user \
    && useradd --uid 1000 --gid user --create-home --no-log-init user \
    && mkdir -p /opt/app /workspace/inputs /workspace/outputs \
    && chown user:user /opt/app /workspace/inputs /workspace/outputs

# The named user of DAFT's image (uid 1000); the name resolves inside the image.
# hadolint ignore=DL3066
USER user
WORKDIR /opt/app

# Dependencies first: this layer is reused while only code or models change. What inference never
# loads goes in the same layer (removed in a later one, it would still be in the image): OpenVINO's
# device plugins other than CPU (the runtime compiles on "CPU" only) and the GPU's kernel cache, its
# frontends other than IR (the models are IR) with their Python wrappers, its C API, headers, CMake
# files and tools (model conversion, benchmark); OpenCV's Haar cascades; numpy's
# headers; every package's tests and type stubs; the command-line scripts. Bytecode pip compiled for
# the modules that remain stays: each case's fresh container would compile them again otherwise.
# tests/test_container.py runs the cut image and compares its outputs with the host's.
COPY --chown=user:user inference_requirements.txt /opt/app/
# (cd, not WORKDIR: the user site's path names the Python version, known only when it runs.)
# hadolint ignore=DL3003
RUN python -m pip install --user --no-cache-dir -r inference_requirements.txt \
    && cd "$(python -m site --user-site)" \
    && rm -rf openvino/libs/libopenvino_intel_gpu_plugin.so openvino/libs/cache.json \
        openvino/libs/libopenvino_intel_npu_plugin.so openvino/libs/libopenvino_auto_plugin.so \
        openvino/libs/libopenvino_auto_batch_plugin.so openvino/libs/libopenvino_hetero_plugin.so \
        openvino/libs/libopenvino_c.so.* openvino/include openvino/cmake \
        openvino/tools/ovc openvino/tools/benchmark cv2/data/*.xml numpy/_core/include /home/user/.local/bin \
    && find openvino/libs -name 'libopenvino_*_frontend.so*' ! -name 'libopenvino_ir_frontend.so*' -delete \
    && find openvino/frontend -mindepth 1 -maxdepth 1 -type d ! -name __pycache__ -exec rm -rf {} + \
    && find . -depth -type d -name tests -exec rm -rf {} + \
    && find . -name '*.pyi' -delete

COPY --chown=user:user PerfectMetaOpenVINO.py predict.sh /opt/app/
COPY --chown=user:user daftseg/__init__.py daftseg/atomic.py daftseg/geometry.py /opt/app/daftseg/
COPY --chown=user:user daftseg/inference/ /opt/app/daftseg/inference/
COPY --chown=user:user daftseg/configs/modalities.toml daftseg/configs/modalities_916bd4e.toml /opt/app/daftseg/configs/
COPY --chown=user:user openvinomodels/ /opt/app/openvinomodels/
# Bytecode compiled into the image: each case runs in a fresh container (with
# PYTHONDONTWRITEBYTECODE), so anything compiled at run time is never reused and every case would
# compile daftseg's modules from source again (about 30 ms per case on 2 cores).
RUN python -m compileall -q daftseg
