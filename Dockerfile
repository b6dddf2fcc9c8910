# weir in a container: backup.sh on a SCHEDULE (or once), restore.sh on demand.
#
#   docker build -t weir .
#   docker run --rm -e POSTGRES_HOST=db -e S3_BUCKET=backups -e PASSPHRASE_FILE=/run/secrets/pp weir
#   docker run --rm -e ... -e RESTORE_DATABASE=app weir restore.sh
#
# Stage 1 builds the binaries; stage 2 is a slim Debian with only what the scripts run:
# the weir binaries (stripped), their man pages and bash, zsh and fish completions, PostgreSQL's client
# tools (pg_dump, pg_restore, psql, pg_dumpall) from the PGDG repository so that they are as
# new as the servers they back up, bash, curl for the webhook, and tini to reap processes as
# PID 1. Where PGDG is out of reach, --build-arg PG_SOURCE=debian --build-arg PG_MAJOR=15
# takes the client tools from Debian bookworm itself (version 15 only).

FROM rust:1-bookworm AS build
WORKDIR /src
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends libpq-dev libssl-dev pkg-config \
    && rm -rf /var/lib/apt/lists/*
COPY Cargo.toml Cargo.lock ./
COPY src ./src
RUN cargo build --release --locked --bins \
    && mkdir /out \
    && find target/release -maxdepth 1 -type f -executable -name 'weir-*' -exec cp {} /out/ \; \
    && strip /out/*

FROM debian:bookworm-slim
# The client tools' major version: at least the newest server you back up (pg_dump refuses
# newer servers, and weir-extract says so).
ARG PG_MAJOR=17
# pgdg: PostgreSQL's own repository (every supported major version); debian: bookworm's.
ARG PG_SOURCE=pgdg
RUN apt-get update -qq \
    && apt-get install -y -qq --no-install-recommends ca-certificates postgresql-common bash bash-completion curl jq tini libssl3 \
    && if [ "$PG_SOURCE" = pgdg ]; then /usr/share/postgresql-common/pgdg/apt.postgresql.org.sh -y; fi \
    && apt-get install -y -qq --no-install-recommends "postgresql-client-${PG_MAJOR}" libpq5 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /var/lib/weir --create-home weir \
    && mkdir /metrics && chown weir /metrics
COPY --from=build /out/ /usr/local/bin/
COPY man/ /usr/local/share/man/man1/
COPY completions/bash/ /usr/share/bash-completion/completions/
COPY completions/zsh/ /usr/share/zsh/vendor-completions/
COPY completions/fish/ /usr/share/fish/vendor_completions.d/
COPY scripts/backup.sh scripts/restore.sh /opt/weir/
COPY scripts/lib/weir-env.sh scripts/lib/restore-physical.sh /opt/weir/lib/
ENV PATH="/opt/weir:/usr/lib/postgresql/${PG_MAJOR}/bin:${PATH}"
USER weir
WORKDIR /var/lib/weir
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["backup.sh"]
