# idres for a production-like run: points at a PostgreSQL server through IDRES_DSN
# (see docker-compose.yml). The embedded PostgreSQL stays installed as a dependency
# but is not started when a DSN is set.
FROM python:3.12-slim

RUN useradd --system --home-dir /var/lib/idres --create-home idres \
    && install -d -o idres -m 0700 /var/lib/idres/data
WORKDIR /src
COPY pyproject.toml README.md ./
COPY resolver ./resolver
COPY registry ./registry
COPY migrations ./migrations
RUN pip install --no-cache-dir . && rm -rf /src

USER idres
WORKDIR /var/lib/idres
ENV IDRES_HOST=0.0.0.0 \
    IDRES_PORT=8000 \
    IDRES_DATA_DIR=/var/lib/idres/data
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --retries=3 \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=3)"
CMD ["idres", "serve"]
