# regbridge: a static binary in a minimal image.
#   docker build --build-arg VERSION=$(git describe --tags --always) -t regbridge .
#   docker run --rm -e REGBRIDGE_ADMIN_TOKEN="$(openssl rand -hex 32)" \
#     -p 5065:5065/udp -p 5065:5065/tcp -p 9065:9065 regbridge
# Inside the container regbridge listens on every address (the binary's own
# defaults are loopback only). An HTTP listener other hosts can reach needs
# REGBRIDGE_ADMIN_TOKEN (it protects the /v1 admin API): without it the
# container stops at once with exit code 2 and says so. The embedded SQLite
# store lives in /data. cmd/regbridge's TestStaticBuild builds the binary
# exactly as below and runs it.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/regbridge ./cmd/regbridge \
 && /out/regbridge version \
 && mkdir -p /out/data

# distroless/static: no shell, no libc, CA certificates and tzdata
# included; :nonroot runs as uid 65532.
FROM gcr.io/distroless/static-debian12:nonroot
ARG VERSION=dev
LABEL org.opencontainers.image.title="regbridge" \
      org.opencontainers.image.description="RFC 3680 registration events from a SIP registrar's contact store" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.source="https://github.com/regbridge/regbridge" \
      org.opencontainers.image.documentation="https://github.com/regbridge/regbridge#readme"
COPY --from=build /out/regbridge /usr/local/bin/regbridge
COPY --from=build --chown=nonroot:nonroot /out/data /data
WORKDIR /data
USER nonroot:nonroot
ENV REGBRIDGE_SIP_LISTEN=udp://0.0.0.0:5065,tcp://0.0.0.0:5065 \
    REGBRIDGE_HTTP_LISTEN=0.0.0.0:9065
# 5065: SIP (SUBSCRIBE/NOTIFY); 9065: HTTP (/healthz, /readyz, /metrics,
# /v1 API, live view).
EXPOSE 5065/udp 5065/tcp 9065/tcp
# No shell or curl in the image: the binary asks its own /readyz. SIGTERM
# (docker stop) sends every subscriber a final NOTIFY within
# REGBRIDGE_SHUTDOWN_DRAIN (5s), inside docker stop's default 10s.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 CMD ["/usr/local/bin/regbridge", "health"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/regbridge"]
