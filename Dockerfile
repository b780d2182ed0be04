# regbridge: a static binary in a minimal image.
#   docker build -t regbridge .
#   docker run --rm -p 5065:5065/udp -p 5065:5065/tcp -p 9065:9065 regbridge
# Inside the container regbridge listens on every address (the binary's own
# defaults are loopback only) and keeps its embedded SQLite file in /data.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/regbridge ./cmd/regbridge \
 && mkdir -p /out/data

FROM gcr.io/distroless/static-debian12:nonroot
LABEL org.opencontainers.image.title="regbridge" \
      org.opencontainers.image.description="RFC 3680 registration events from a SIP registrar's contact store"
COPY --from=build /out/regbridge /usr/local/bin/regbridge
COPY --from=build --chown=nonroot:nonroot /out/data /data
WORKDIR /data
USER nonroot:nonroot
ENV REGBRIDGE_SIP_LISTEN=udp://0.0.0.0:5065,tcp://0.0.0.0:5065 \
    REGBRIDGE_HTTP_LISTEN=0.0.0.0:9065
EXPOSE 5065/udp 5065/tcp 9065/tcp
HEALTHCHECK --interval=10s --timeout=3s --retries=3 CMD ["/usr/local/bin/regbridge", "health"]
ENTRYPOINT ["/usr/local/bin/regbridge"]
