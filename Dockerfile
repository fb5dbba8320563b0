# syntax=docker/dockerfile:1
# The function image: the same image serves the API (default CMD) and the S3 worker
# (CMD ["handler.app.s3_handler"], set by the CDK stack). Build context: the repository root,
# trimmed by .dockerignore.
# 3.12+: the Lambda base images from 3.12 on are Amazon Linux 2023 (glibc 2.34); ai-edge-litert ships
# manylinux_2_27 wheels only, which the 3.11 image (Amazon Linux 2, glibc 2.26) cannot install.
ARG PYTHON_VERSION=3.12
# Where /opt/model comes from: "export" (stage 1 exports the ImageNet model) or "given" (a model
# directory, e.g. `make train` output, passed as the named build context "model-dir"; the CDK
# stack does this for `-c modelDir=build/models/NAME`).
ARG MODEL_ORIGIN=export
# Base images: tags by default, references pinned by digest when layers/base-images.json knows them
# (the CDK stack passes these two; `make base-digests` resolves and records them with Docker).
ARG EXPORT_BASE=python:${PYTHON_VERSION}-slim
ARG LAMBDA_BASE=public.ecr.aws/lambda/python:${PYTHON_VERSION}

# --- Stage 1: export the model with TensorFlow (build platform only: the files are portable) ---
FROM --platform=$BUILDPLATFORM ${EXPORT_BASE} AS model-export
WORKDIR /build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 TF_CPP_MIN_LOG_LEVEL=2 KERAS_HOME=/build/keras-home
COPY layers/model/requirements.lock layers/model/requirements.lock
RUN pip install --require-hashes -r layers/model/requirements.lock
COPY layers/__init__.py layers/__init__.py
COPY layers/model/__init__.py layers/model/export.py layers/model/manifest_writer.py layers/model/
COPY handler/__init__.py handler/config.py handler/contract.py handler/
COPY handler/recognition/__init__.py handler/recognition/manifest.py handler/recognition/notices.py handler/recognition/
# Keras downloads the official ImageNet weights and class index (it checks the index's md5).
# Pin the weights too by passing --build-arg WEIGHTS_SHA256=<sha256 of the .h5 you trust>.
ARG WEIGHTS_SHA256=""
ARG MODEL_VERSION=1.0.0
# The export alone: its serving cost is measured by `make model` (training.imagenet: same code, same
# weights) where synth runs.
RUN python -m layers.model.export --out /opt/model --version "${MODEL_VERSION}" \
 && if [ -n "${WEIGHTS_SHA256}" ]; then \
      echo "${WEIGHTS_SHA256}  ${KERAS_HOME}/models/mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224.h5" \
      | sha256sum -c -; fi

# --- Or a model directory given as a build context (BuildKit skips the stage not chosen) ---
FROM scratch AS model-given
COPY --from=model-dir / /opt/model/

FROM model-${MODEL_ORIGIN} AS model

# --- Stage 2: the Lambda runtime image: runtime requirements, the code, the model at /opt/model ---
FROM ${LAMBDA_BASE} AS runtime
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# Lock files: every dependency pinned with its hashes (make lock); pip refuses anything else.
COPY layers/runtime/requirements.lock /tmp/requirements/runtime.lock
COPY layers/model/requirements.lock /tmp/requirements/model.lock
# MODEL_BACKEND=keras also installs TensorFlow (about 1.3 GB more); litert needs only the runtime set.
ARG MODEL_BACKEND=litert
RUN pip install --require-hashes -r /tmp/requirements/runtime.lock --target "${LAMBDA_TASK_ROOT}" \
 && if [ "${MODEL_BACKEND}" = "keras" ]; then \
      pip install --require-hashes -r /tmp/requirements/model.lock --target "${LAMBDA_TASK_ROOT}"; fi \
 && rm -rf /tmp/requirements
COPY --from=model /opt/model /opt/model
COPY handler/ ${LAMBDA_TASK_ROOT}/handler/
ENV MODEL_DIR=/opt/model \
    MODEL_BACKEND=${MODEL_BACKEND} \
    KERAS_HOME=/tmp/.keras \
    POWERTOOLS_SERVICE_NAME=image-recognition \
    POWERTOOLS_METRICS_NAMESPACE=ImageRecognition
CMD ["handler.app.api_handler"]
