# formcheck images, one per deployable (docs/architecture.md, "Install units"); `docker build --target NAME .`:
#   aggregator (the default, last stage): the aggregator and the deploy tools the compose stack runs, with the base
#     and aggregator dependencies only (requirements/aggregator.txt: no MediaPipe, OpenCV, LiteRT or TensorFlow);
#   edge: an edge node (the compose `demo` profile replays a clip with it), with the base and edge dependencies
#     (requirements/edge.txt) and the pose model, built at image build time from the installed mediapipe.
# Raspberry Pi nodes normally run the edge natively (docs/raspberry-pi.md); the edge image builds for arm64 as well.
# Sizes of the two dependency sets: docs/deploy.md, "Images".

FROM python:3.11-slim-bookworm AS runtime
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    FORMCHECK_CACHE=/var/cache/formcheck
RUN useradd --system --uid 10001 --home /opt/formcheck formcheck \
    && mkdir -p /opt/formcheck /var/cache/formcheck /run/formcheck \
    && chown formcheck /var/cache/formcheck /run/formcheck
WORKDIR /opt/formcheck

# The project's wheel, built once; each image installs it alone, without resolving (its dependencies come
# hash-checked from that image's lock).
FROM runtime AS wheel
COPY pyproject.toml README.md ./
COPY formcheck ./formcheck
COPY protocol ./protocol
COPY runtime ./runtime
COPY edge_node ./edge_node
COPY aggregator ./aggregator
COPY models ./models
COPY dashboards ./dashboards
RUN pip wheel --no-deps --wheel-dir /wheels .

FROM runtime AS edge
# OpenCV needs libGL and GLib even headless.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgl1 libglib2.0-0 \
    && rm -rf /var/lib/apt/lists/*
COPY requirements/edge.txt ./requirements/edge.txt
RUN pip install --require-hashes -r requirements/edge.txt
COPY --from=wheel /wheels /wheels
# The pose model is built from the pose graphs of the installed mediapipe into a read-only place of the image,
# outside site-packages and outside the cache (a tmpfs in compose), where FORMCHECK_MODELS_DIR points the edge.
ENV FORMCHECK_MODELS_DIR=/opt/formcheck/models
RUN pip install --no-deps /wheels/*.whl \
    && rm -rf /wheels \
    && formcheck models build
USER formcheck
ENTRYPOINT ["formcheck"]
CMD ["edge"]

FROM runtime AS aggregator
COPY requirements/aggregator.txt ./requirements/aggregator.txt
RUN pip install --require-hashes -r requirements/aggregator.txt
COPY --from=wheel /wheels /wheels
RUN pip install --no-deps /wheels/*.whl \
    && rm -rf /wheels
USER formcheck
ENTRYPOINT ["formcheck"]
CMD ["aggregator"]
