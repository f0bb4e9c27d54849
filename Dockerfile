# The Makefile's set-up, in a container: the same pinned torch first, then the runtime
# requirements constrained to the exact versions of requirements.lock, then the package.
#   docker build -t prunesid-demo . && docker run -p 7860:7860 prunesid-demo
#   CPU-only image (no CUDA wheels):
#   docker build --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cpu -t prunesid-demo .
#   (GPU: docker run --gpus all -e PRUNESID_MODEL=llava-hf/llava-1.5-7b-hf -p 7860:7860 prunesid-demo)
FROM python:3.11-slim

ARG TORCH=torch==2.13.0
ARG TORCH_INDEX=
ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    GRADIO_SERVER_NAME=0.0.0.0 \
    GRADIO_SERVER_PORT=7860 \
    HF_HOME=/home/user/.cache/huggingface

# Non-root, uid 1000, as Hugging Face Spaces runs containers.
RUN useradd --create-home --uid 1000 user
WORKDIR /home/user/app

COPY --chown=user requirements.txt requirements.lock pyproject.toml ./
RUN pip install "$TORCH" ${TORCH_INDEX:+--index-url "$TORCH_INDEX"} \
    && pip install -r requirements.txt -c requirements.lock

COPY --chown=user . .
RUN pip install --no-deps -e .

USER user
EXPOSE 7860
CMD ["python", "app.py"]
