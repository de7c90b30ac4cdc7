# CPU image for FaceCast. The neural engine's CUDA stage arrives with it (DESIGN.md §2, §6).
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
RUN pip install .

RUN useradd --create-home --uid 10001 facecast && mkdir -p /data && chown facecast /data
USER facecast
VOLUME ["/data"]
EXPOSE 8080
ENTRYPOINT ["facecast"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8080"]
