# The one image of docker-compose.yml: the `code` gRPC server, `webserver` and `daemon` all run it.
#
#   docker compose build            # or: docker build -t gateway-pipelines .
#
# The app lives in /opt/dagster/app and is installed in editable mode: the code location is loaded
# with `dg.load_from_defs_folder`, which finds the project through pyproject.toml next to the
# package, and the migrations (sql/), the dbt project (dbt/) and dagster.yaml are found relative to
# it too (gateway_pipelines/lib/state.py). A plain `pip install .` would put the package in
# site-packages, away from all of them.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DAGSTER_HOME=/opt/dagster/dagster_home \
    GATEWAY_HOME=/opt/dagster/state \
    DAGSTER_DISABLE_TELEMETRY=1

WORKDIR /opt/dagster/app

# Dependencies first, in their own layer: they change far less often than the code. A stub
# package lets pip resolve and install them from pyproject.toml alone.
COPY pyproject.toml ./
RUN mkdir -p gateway_pipelines \
    && touch gateway_pipelines/__init__.py \
    && pip install -e . \
    && rm -rf gateway_pipelines *.egg-info

# The code, the migrations, the dbt project and the deploy files (.dockerignore keeps the rest out).
COPY . .
RUN pip install --no-deps -e .

# dbt's manifest at build time, so the code server starts without running dbt. `dbt parse` needs
# no database: dbt/profiles.yml falls back to defaults for the GATEWAY_PG_* variables, and the
# assets set them from DATABASE_URL when a run calls dbt.
RUN dbt parse --project-dir dbt --profiles-dir dbt --target gateway \
    && test -f dbt/target/manifest.json

# The Dagster instance: the committed deploy/dagster.yaml, which reads DAGSTER_PG_URL at start-up.
RUN mkdir -p "$DAGSTER_HOME" "$GATEWAY_HOME" \
    && cp deploy/dagster.yaml "$DAGSTER_HOME/dagster.yaml"

# Not root. dbt writes target/ and logs/ inside the project at run time; Dagster writes compute
# logs under $DAGSTER_HOME/storage; the platform keeps models and landing files in $GATEWAY_HOME.
# Named volumes mounted on those folders start with this ownership.
RUN useradd --create-home --uid 1000 --shell /usr/sbin/nologin dagster \
    && mkdir -p "$DAGSTER_HOME/storage" dbt/logs \
    && chown -R dagster:dagster "$DAGSTER_HOME" "$GATEWAY_HOME" dbt
USER dagster

# The code server's port; the webserver (3000) publishes its own in docker-compose.yml.
EXPOSE 4000 3000

# Each service of docker-compose.yml sets its own command; this default is the code server.
CMD ["dagster", "api", "grpc", "-m", "gateway_pipelines.definitions", "-h", "0.0.0.0", "-p", "4000"]
