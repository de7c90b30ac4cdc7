# FaceCast images. `docker build .` makes the CPU image (classic engine, and the neural
# engine on the CPU); `docker build --target gpu .` makes a CUDA image whose neural engine
# runs on the GPU (onnxruntime-gpu instead of onnxruntime: never both, they clash).
# Model files are not baked in: mount them at /data/models (see `facecast models`).
FROM python:3.11-slim AS base

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    FACECAST_DATA_DIR=/data \
    FACECAST_BUNDLED_CLIPS_DIR=/app/clips

# CJK and colour-emoji fonts for meme captions (Latin and Cyrillic ship with FaceCast).
RUN apt-get update \
    && apt-get install -y --no-install-recommends fonts-droid-fallback fonts-noto-color-emoji \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY pyproject.toml README.md ./
COPY core ./core
COPY bots ./bots
COPY facecast ./facecast
COPY clips ./clips
RUN pip install ".[neural,telegram,discord,postgres,scale]"

RUN useradd --create-home --uid 10001 facecast && mkdir -p /data && chown facecast /data
USER facecast
VOLUME ["/data"]
EXPOSE 8080
ENTRYPOINT ["facecast"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8080"]

FROM nvidia/cuda:12.6.3-cudnn-runtime-ubuntu24.04 AS gpu

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    FACECAST_DATA_DIR=/data \
    FACECAST_BUNDLED_CLIPS_DIR=/app/clips \
    FACECAST_ENGINE=insightface
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv \
       fonts-droid-fallback fonts-noto-color-emoji \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /opt/facecast
ENV PATH=/opt/facecast/bin:$PATH
WORKDIR /app
COPY pyproject.toml README.md ./
COPY core ./core
COPY bots ./bots
COPY facecast ./facecast
COPY clips ./clips
RUN pip install ".[gpu,telegram,discord,postgres,scale]"
RUN useradd --create-home --uid 10001 facecast && mkdir -p /data && chown facecast /data
USER facecast
VOLUME ["/data"]
EXPOSE 8080
ENTRYPOINT ["facecast"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8080"]
