# sockpool container: Debian slim, non-root, config at /etc/sockpool/sockpool.ini.
# Give it the host's egress IPs with `docker run --network host ...`.
FROM debian:12-slim AS build
RUN apt-get update && apt-get install -y --no-install-recommends \
        gcc libc6-dev pkg-config meson ninja-build libuv1-dev libinih-dev \
        libcrypt-dev libmicrohttpd-dev && rm -rf /var/lib/apt/lists/*
COPY . /src
RUN meson setup /build /src --buildtype=release -Dtests=false && ninja -C /build proxy/sockpool

FROM debian:12-slim
RUN apt-get update && apt-get install -y --no-install-recommends \
        libuv1 libinih1 libcrypt1 libmicrohttpd12 curl ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --no-create-home --shell /usr/sbin/nologin sockpool \
    && mkdir -p /etc/sockpool
COPY --from=build /build/proxy/sockpool /usr/local/bin/sockpool
COPY examples/docker.ini /etc/sockpool/sockpool.ini
USER sockpool
EXPOSE 1080 9180
HEALTHCHECK --interval=30s --timeout=3s CMD curl -fsS http://127.0.0.1:9180/healthz || exit 1
ENTRYPOINT ["/usr/local/bin/sockpool"]
CMD ["-c", "/etc/sockpool/sockpool.ini"]
