# formcheck image: the aggregator (default) and, under the compose `demo`
# profile, an edge node replaying a clip. Raspberry Pi nodes normally run the
# edge natively (docs/edge-node.md); this image builds for arm64 as well.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    FORMCHECK_CACHE=/var/cache/formcheck

# OpenCV (pulled in by mediapipe) needs libGL and GLib even headless.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgl1 libglib2.0-0 \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/formcheck
# Every third-party package from the hash-locked set (make lock), then this project alone without resolving.
COPY requirements/server.txt ./requirements/server.txt
RUN pip install --require-hashes -r requirements/server.txt
COPY pyproject.toml README.md ./
COPY formcheck ./formcheck
COPY protocol ./protocol
COPY edge_node ./edge_node
COPY aggregator ./aggregator
COPY models ./models
RUN pip install --no-deps . \
    # The pose model is built from the pose graphs of the installed mediapipe at image build time, next to
    # the installed package, where formcheck.paths looks for it.
    && formcheck models build \
    && useradd --system --uid 10001 --home /opt/formcheck formcheck \
    && mkdir -p /var/cache/formcheck /run/formcheck \
    && chown formcheck /var/cache/formcheck /run/formcheck

USER formcheck
ENTRYPOINT ["formcheck"]
CMD ["aggregator"]
