# The abflow gateway image: `abflow serve` as the entrypoint's default command, as user
# 10001 (the Helm chart and `abflow k8s render` run it so, with a read-only root filesystem).
# No secret is baked in: the store URL comes from ABFLOW_STORE_URL at run time.
#
#   podman build -t abflow:0.1.0 .        # or: docker build -t abflow:0.1.0 .
#   podman run --rm -p 8000:8000 abflow:0.1.0
#
# Checked in the tests by hadolint and tests/deploy/test_deploy_image.py; see docs/kubernetes.md.

# A full version, so that a rebuild gets the same Python; move it on purpose.
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install --no-cache-dir --disable-pip-version-check "build==1.2.2.post1" \
    && python -m build --wheel --outdir /wheels .

FROM ${PYTHON_IMAGE}
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    HOME=/tmp \
    ABFLOW_JOURNAL_DIR=/var/lib/abflow/journal
COPY --from=build /wheels /wheels
# postgres: the psycopg driver for a PostgreSQL store; the wheel's own pins come along
RUN pip install --no-cache-dir --disable-pip-version-check "$(ls /wheels/abflow-*.whl)[postgres]" \
    && rm -rf /wheels \
    && useradd --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin abflow \
    && mkdir -p /var/lib/abflow/journal \
    && chown -R 10001:10001 /var/lib/abflow
USER 10001:10001
WORKDIR /var/lib/abflow
EXPOSE 8000
# /healthz answers once the process serves; /readyz (models loaded) is for the orchestrator
HEALTHCHECK --interval=15s --timeout=3s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2).status != 200)"]
ENTRYPOINT ["abflow"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]
