# soilcast training / pipeline image: every Kubeflow component runs in it (params.yaml
# `pipeline.image` names it), and it also serves `soilcast train` on a GPU node.
#
# GPU: python:3.11-slim plus TensorFlow's CUDA/cuDNN wheels (`tensorflow[and-cuda]`, same
# version as requirements.lock) - the NVIDIA driver comes from the node through the NVIDIA
# container runtime / device plugin. Alternative base with CUDA in the OS image:
#   docker build --build-arg BASE_IMAGE=tensorflow/tensorflow:2.21.0-gpu .
# (check that its Python is 3.11, which pyproject.toml requires).
#
# Build:  docker build -t "$(python -c 'import yaml;print(yaml.safe_load(open("params.yaml"))["pipeline"]["image"])')" .
ARG BASE_IMAGE=python:3.11-slim-bookworm
FROM ${BASE_IMAGE}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TF_CPP_MIN_LOG_LEVEL=2 \
    KERAS_BACKEND=tensorflow \
    SOILCAST_HOME=/app

# GDAL/PROJ come inside the rasterio/pyproj wheels; libgomp for numpy/scipy/TF threads.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libgomp1 ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --create-home --uid 1000 --shell /usr/sbin/nologin soilcast

WORKDIR /app

# 1) Pinned dependencies from the lock file (cached layer while the lock is unchanged),
#    then the CUDA extras of exactly the locked TensorFlow version.
COPY requirements.lock ./
RUN python -m pip install -r requirements.lock \
 && TF_VERSION="$(sed -n 's/^tensorflow==//p' requirements.lock)" \
 && test -n "$TF_VERSION" \
 && python -m pip install "tensorflow[and-cuda]==${TF_VERSION}"

# 2) The package itself (no dependency resolution: everything is pinned above).
COPY pyproject.toml README.md ./
COPY src ./src
RUN python -m pip install --no-deps . \
 && python -c "import soilcast, kfp, tensorflow; print('soilcast ok, tf', tensorflow.__version__)"

# 3) Static resources and the single config (relative paths resolve under SOILCAST_HOME).
COPY params.yaml dvc.yaml ./
COPY data/static ./data/static

RUN mkdir -p /app/data /app/artifacts /app/models && chown -R soilcast:soilcast /app
USER soilcast

# Kubeflow sets the command of each component; this default just documents the CLI.
CMD ["soilcast", "--help"]
