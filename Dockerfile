# The Code Remote server: gunicorn + gevent, SQLite on the /data volume unless DATABASE_URL says otherwise.
#   docker build -t code-remote .
#   docker run -e AUTH_TOKEN=... -p 127.0.0.1:8000:8000 -v code-remote-data:/data code-remote
# Put a TLS-terminating proxy (Caddy, nginx) in front: see docs/DEPLOYMENT.md.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PORT=8000 \
    DATABASE_URL=sqlite:////data/code-remote.db \
    FORWARDED_ALLOW_IPS=*

WORKDIR /app
COPY requirements.txt ./
RUN pip install -r requirements.txt

COPY wsgi.py gunicorn.conf.py gunicorn_worker.py Procfile ./
COPY web ./web
COPY migrations ./migrations
COPY scripts/start-server ./scripts/start-server
# Tailscale's static binaries, used only when TAILSCALE_AUTHKEY is set (scripts/start-server).
COPY --from=docker.io/tailscale/tailscale:stable /usr/local/bin/tailscaled /usr/local/bin/tailscale /usr/local/bin/

RUN useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin coderemote \
    && mkdir -p /data && chown coderemote /data
USER 10001
VOLUME ["/data"]
EXPOSE 8000

HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('PORT', '8000'), timeout=4)"]

# Joins a tailnet when TAILSCALE_AUTHKEY is set, then runs the Procfile's web line: migrations first
# (forward-only, recorded in the database), then the server.
CMD ["scripts/start-server"]
