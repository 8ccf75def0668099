# The inspection service on a CUDA runtime: gRPC on 50051 (health also on 50052), Prometheus metrics on 9400, models at /models.
#
#   docker build -t inspector .
#   docker run --gpus all -v "$PWD/models:/models" -p 50051:50051 -p 9400:9400 inspector [--name NAME] [--camera ID]...
#
# Extra arguments go after the image name and are appended to `inspector serve` (see `inspector serve --help`).
# Without a GPU (no --gpus) the service runs on the CPU (--device auto). The store must hold a trained model
# (`inspector train --out models ...`); health stays NOT_SERVING until one is loaded and warm. The service runs as
# uid 10001; Admin.ActivateVersion / Rollback write the store's ACTIVE pointer, so a bind-mounted store must be
# writable by it (or run with --user "$(id -u):$(id -g)").
#
# PyTorch's wheels bring their own CUDA libraries and cuDNN; the CUDA runtime base adds the NVIDIA container
# runtime's settings (NVIDIA_VISIBLE_DEVICES, NVIDIA_DRIVER_CAPABILITIES) and CUDA's user-space runtime.
FROM nvidia/cuda:12.8.1-runtime-ubuntu22.04

ARG DEBIAN_FRONTEND=noninteractive
# Ubuntu 22.04 ships Python 3.11 in universe (python3.11, python3.11-venv) beside its default 3.10.
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3.11 python3.11-venv ca-certificates \
 && rm -rf /var/lib/apt/lists/*

ENV VIRTUAL_ENV=/opt/inspector \
    PATH=/opt/inspector/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    OMP_WAIT_POLICY=PASSIVE

# torch first, in its own layer: the largest download, and it changes less often than the code.
RUN python3.11 -m venv "$VIRTUAL_ENV" \
 && pip install --upgrade pip \
 && pip install torch==2.14.1 torchvision==0.29.1

WORKDIR /src
COPY pyproject.toml README.md ./
COPY inspector ./inspector
RUN pip install . \
 && rm -rf /src

RUN useradd --uid 10001 --user-group --create-home --home-dir /home/inspector --shell /usr/sbin/nologin inspector \
 && mkdir -p /models \
 && chown inspector:inspector /models
USER 10001:10001
WORKDIR /home/inspector

# Model bundles: models/<name>/<version>/ and models/<name>/ACTIVE (Admin.ActivateVersion and Rollback write it).
VOLUME /models
EXPOSE 50051 50052 9400

# grpc.health.v1 overall status: NOT_SERVING until the model is loaded and warm, and again while draining; asked on
# the health port. With --tls-cert the health port speaks TLS too: add --tls-ca to the check, or --health-plaintext.
HEALTHCHECK --interval=10s --timeout=5s --start-period=180s --retries=3 \
    CMD ["python", "-m", "inspector.healthcheck", "--target", "127.0.0.1:50052", "--timeout", "3"]

# Exec form: the service is PID 1 and gets SIGTERM itself (health NOT_SERVING, new calls refused, frames read
# answered, streams closed within --grace-seconds, 10 s by default), so give `docker stop` more: docker stop -t 30.
STOPSIGNAL SIGTERM
ENTRYPOINT ["inspector", "serve", "--store", "/models", "--host", "0.0.0.0", "--health-port", "50052"]
