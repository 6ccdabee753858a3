# Aspen's container image: aspen-node and aspen-verifier, built in one
# stage, run in a small one as an unprivileged user. compose.yaml runs a
# verifier, three workers and a consumer from it.
#
#   docker build -t aspen .
#   docker compose up

# ---- build ----
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# Static binaries (no cgo), with the module's build information embedded
# ('aspen-node version').
RUN CGO_ENABLED=0 go build -trimpath -o /out/ ./cmd/aspen-node ./cmd/aspen-verifier

# ---- run ----
FROM debian:bookworm-slim
RUN groupadd --system --gid 10001 aspen \
 && useradd --system --uid 10001 --gid aspen --home-dir /data --shell /usr/sbin/nologin aspen \
 && mkdir -p /data /shared && chown aspen:aspen /data /shared
COPY --from=build /out/aspen-node /out/aspen-verifier /usr/local/bin/
COPY packaging/docker/entrypoint.sh /usr/local/bin/aspen-entrypoint
USER aspen:aspen
WORKDIR /data
ENV ASPEN_DATA=/data ASPEN_VERIFIER_DATA=/data
# libp2p, the local API / dashboard / metrics.
EXPOSE 7400 7341
ENTRYPOINT ["/usr/local/bin/aspen-entrypoint"]
CMD ["aspen-node", "--help"]
