# syntax=docker/dockerfile:1
# One image for every Claire de Binaire container: the migration job and each service
# (`claire run --service NAME`). Build: `docker compose build` (or `docker build -t claire .`).

# --------------------------------------------------------------------------- build: the venv
FROM python:3.11-slim AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

# The pinned dependencies first, in their own layer: code changes do not reinstall them.
# (The lock's local index lines point at folders that exist only on the developers' machines;
# pip warns about them and uses the default index.)
COPY requirements.lock /tmp/requirements.lock
RUN pip install -r /tmp/requirements.lock

# --------------------------------------------------------------------------- runtime
FROM python:3.11-slim

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    METRICS_PORT=9108

# A fixed uid/gid so volume ownership is stable across rebuilds.
RUN groupadd --system --gid 10001 claire \
    && useradd --system --uid 10001 --gid claire --home-dir /app --shell /usr/sbin/nologin claire

COPY --from=build /opt/venv /opt/venv

WORKDIR /app
COPY --chown=claire:claire . /app
# Editable install: the code stays in /app next to `alembic/`, which `claire db upgrade` reads
# relative to the source tree; only the entry points (`claire`, `replay`) go into the venv.
RUN pip install --no-deps -e /app \
    && claire --help >/dev/null

USER claire

EXPOSE 9108

# Every service serves /health on METRICS_PORT; the image has no curl, Python will do.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('METRICS_PORT', '9108'), timeout=4)"]

# compose.yaml gives each container its command: `claire db upgrade` or `claire run --service NAME`.
CMD ["claire", "run"]
