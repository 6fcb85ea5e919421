# Cluster image for SimCIT: Java 17 (Spark) + Python 3.11 + the pinned stack.
# CPU default; for GPU workers pass a CUDA base and a CUDA torch wheel index, e.g.
#   docker build --build-arg BASE_IMAGE=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04 \
#                --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu128 -t simcit:gpu .
ARG BASE_IMAGE=ubuntu:24.04
FROM ${BASE_IMAGE}

ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    JAVA_HOME=/usr/lib/jvm/java-17-openjdk-amd64 \
    VIRTUAL_ENV=/opt/simcit/.venv \
    PATH=/opt/simcit/.venv/bin:$PATH \
    PYSPARK_PYTHON=/opt/simcit/.venv/bin/python \
    HF_HUB_OFFLINE=1

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# Python 3.11 comes from the deadsnakes PPA on Ubuntu 24.04 (its default is 3.12).
RUN apt-get update \
    && apt-get install -y --no-install-recommends software-properties-common=0.99.* gpg-agent=2.4.* \
    && add-apt-repository -y ppa:deadsnakes/ppa \
    && apt-get update \
    && apt-get install -y --no-install-recommends \
        openjdk-17-jre-headless=17.* python3.11=3.11.* python3.11-venv=3.11.* python3.11-dev=3.11.* \
        g++=4:13.* ninja-build=1.11.* procps=2:4.* \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/simcit
COPY requirements.txt requirements-dev.txt pyproject.toml README.md ./
RUN python3.11 -m venv "$VIRTUAL_ENV" \
    && pip install --extra-index-url "$TORCH_INDEX" torch==2.13.0 \
    && pip install -r requirements.txt torch==2.13.0

COPY simcit ./simcit
COPY geo ./geo
COPY jobs ./jobs
COPY cluster ./cluster
COPY configs ./configs
RUN pip install --no-deps -e .

# Spark workers and Ray nodes run the same image; the entry point is chosen by the submitter
# (spark-submit jobs/<stage>.py ..., ray job submit -- simcit train-tokenizer ...).
CMD ["simcit", "--help"]
