# syntax=docker/dockerfile:1
# labelbroker deployment image. Local development does not need Docker: use scripts/run and
# scripts/test (see docs/deployment.md).
#
#   docker build -t labelbroker .
#   docker compose up --build        # broker + PostgreSQL 15, see docker-compose.yml

# ---- build ---------------------------------------------------------------------------------
FROM debian:bookworm AS build

RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      g++ cmake make pkg-config git ca-certificates \
      libboost-dev libboost-system-dev \
      libpqxx-dev libpq-dev nlohmann-json3-dev catch2 libssl-dev libyaml-cpp-dev \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /src
COPY . .
# .git is not in the build context; pass the commit so /v1/version can report it:
#   docker build --build-arg VCS_REF=$(git rev-parse --short=12 HEAD) .
ARG VCS_REF=unknown
ENV LABELBROKER_GIT_COMMIT=${VCS_REF}

# Release build without tests. Jobs are bounded by the builder's cores: Beast/Asio translation
# units need ~1 GB each, and an unbounded `make -j` can exhaust memory.
RUN cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DLABELBROKER_BUILD_TESTS=OFF \
 && cmake --build build -j"$(nproc)" \
 && strip --strip-unneeded build/bin/* \
 && ls -l build/bin

# ---- runtime -------------------------------------------------------------------------------
FROM debian:bookworm-slim AS runtime

# Runtime libraries only (no compilers, no headers); curl is for the HEALTHCHECK. Boost.System
# is header-only in 1.74 as linked here; the ldd check below fails the build if that changes.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      libpqxx-6.4 libpq5 libssl3 ca-certificates curl \
 && rm -rf /var/lib/apt/lists/*

RUN groupadd --system labelbroker \
 && useradd --system --gid labelbroker --home-dir /nonexistent --no-create-home \
      --shell /usr/sbin/nologin labelbroker

# Every binary the build produced (labelbroker, vendor-sim; brokerctl when it exists).
COPY --from=build /src/build/bin/ /usr/local/bin/
# Fail the image build, not the first start, when a shared library is missing.
RUN if ldd /usr/local/bin/* | grep 'not found'; then exit 1; fi

COPY config/labelbroker.json /etc/labelbroker/labelbroker.json
# vendor-sim's scenario, and a broker config whose vendors point at a vendor-sim container named
# "vendor-sim" (docker-compose.yml); derived from config/local.json so the two never drift apart.
COPY config/sim/ /etc/labelbroker/sim/
COPY config/local.json /etc/labelbroker/local.json
RUN sed -e 's#http://127.0.0.1:9100#http://vendor-sim:9100#g' \
        -e 's#^  "vendors": \[#  "public_url": "http://labelbroker:8080",\n  "vendors": [#' \
        /etc/labelbroker/local.json > /etc/labelbroker/compose.json

# Migrations are compiled into the binary; no schema directory is needed at runtime.
# The database URL comes from LABELBROKER_DATABASE_URL at run time (never baked in).
ENV LABELBROKER_CONFIG=/etc/labelbroker/labelbroker.json \
    LABELBROKER_LISTEN=0.0.0.0:8080

ARG VCS_REF=unknown
LABEL org.opencontainers.image.title="labelbroker" \
      org.opencontainers.image.description="Routes labeling jobs across vendors, scored in PostgreSQL" \
      org.opencontainers.image.revision="${VCS_REF}"

USER labelbroker
WORKDIR /
EXPOSE 8080

# Liveness only (/healthz does no database work); orchestrators should use /readyz for readiness.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD curl -fsS http://127.0.0.1:8080/healthz || exit 1

# SIGTERM (docker stop) drains in-flight requests and exits 0; the binary is PID 1 via exec form,
# so it receives the signal directly. Give it longer than http.shutdown_grace_ms (default 20 s):
#   docker stop -t 30 ... / stop_grace_period: 30s in compose.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/labelbroker"]
CMD ["serve"]
