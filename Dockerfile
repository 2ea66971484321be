# Vireo's production image: one image for every process type (daphne, Celery worker and beat, hostd,
# migrate); docker-compose.yml picks the command. Build: `docker compose build` (or `docker build .`).
#
# Stage 1 compiles libvirt-python against Debian's libvirt-dev, installs the npm packages and collects
# the static files; stage 2 keeps only what runs (no compiler, no npm).

FROM python:3.11-slim-bookworm AS build

ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
RUN apt-get update \
 && apt-get install -y --no-install-recommends libvirt-dev pkg-config gcc libc6-dev nodejs npm \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app
# Python dependencies first (from pyproject.toml), so that code changes reuse this layer.
RUN python -m venv /opt/venv
ENV PATH="/opt/venv/bin:$PATH"
COPY pyproject.toml ./
RUN pip install --upgrade pip && pip install .

# Front-end packages from the npm registry, exactly as package-lock.json pins them.
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund --loglevel=error

COPY . .
# collectstatic only needs settings to load: give it throw-away secrets so that none is generated
# into (and shipped with) the image. Real ones come from the environment at run time.
RUN SECRET_KEY=collectstatic-only \
    VIREO_FERNET_KEYS=Y29sbGVjdHN0YXRpYy1vbmx5LWtleS0wMDAwMDAwMDA= \
    VIREO_DATA_DIR=/app/data \
    python manage.py collectstatic --noinput -v0 \
 && rm -f /app/data/secret_key /app/data/fernet_key


FROM python:3.11-slim-bookworm

# libvirt0: the libvirt client library (ssh via libssh, tls via gnutls); openssh-client for
# plain qemu+ssh:// URIs that use the ssh program.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libvirt0 openssh-client ca-certificates openssl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --create-home --home-dir /home/vireo vireo

ENV PATH="/opt/venv/bin:$PATH" \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    DJANGO_SETTINGS_MODULE=project.settings \
    VIREO_DATA_DIR=/app/data

COPY --from=build /opt/venv /opt/venv
COPY --from=build /app /app
RUN chown -R vireo:vireo /app/data

WORKDIR /app
USER vireo
EXPOSE 8000
CMD ["daphne", "-b", "0.0.0.0", "-p", "8000", "project.asgi:application"]
