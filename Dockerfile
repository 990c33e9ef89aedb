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

# Dependencies first: this layer is reused while only code or models change.
COPY --chown=user:user inference_requirements.txt /opt/app/
RUN python -m pip install --user --no-cache-dir -r inference_requirements.txt

COPY --chown=user:user PerfectMetaOpenVINO.py predict.sh /opt/app/
COPY --chown=user:user daftseg/__init__.py daftseg/atomic.py daftseg/geometry.py /opt/app/daftseg/
COPY --chown=user:user daftseg/inference/ /opt/app/daftseg/inference/
COPY --chown=user:user configs/modalities.toml /opt/app/configs/
COPY --chown=user:user openvinomodels/ /opt/app/openvinomodels/
# Bytecode compiled into the image: each case runs in a fresh container (with
# PYTHONDONTWRITEBYTECODE), so anything compiled at run time is never reused and every case would
# compile daftseg's modules from source again (about 30 ms per case on 2 cores).
RUN python -m compileall -q daftseg
