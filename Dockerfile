# sockpool container: Debian slim, non-root, config at /etc/sockpool/sockpool.ini.
# Give it the host's egress IPs with `docker run --network host ...`.
#
# BASE_IMAGE names the Debian 12 image both stages start from; CI builds it
# locally (mmdebstrap + podman import, see tests/integration/test_container.py).
ARG BASE_IMAGE=debian:bookworm-slim

FROM ${BASE_IMAGE} AS build
RUN apt-get update && apt-get install -y --no-install-recommends \
        gcc libc6-dev pkg-config meson ninja-build libuv1-dev libinih-dev \
        libcrypt-dev libmicrohttpd-dev && rm -rf /var/lib/apt/lists/*
COPY . /src
RUN meson setup /build /src --buildtype=release -Dtests=false -Dlibsystemd=disabled \
    && ninja -C /build proxy/sockpool

FROM ${BASE_IMAGE}
RUN apt-get update && apt-get install -y --no-install-recommends \
        libuv1 libinih1 libcrypt1 libmicrohttpd12 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 999 sockpool \
    && useradd --system --uid 999 --gid 999 --no-create-home --shell /usr/sbin/nologin sockpool \
    && mkdir -p /etc/sockpool
COPY --from=build /build/proxy/sockpool /usr/local/bin/sockpool
COPY examples/docker.ini /etc/sockpool/sockpool.ini
# uid and gid 999: a mounted config must be readable by them (chgrp 999, 0640).
USER sockpool
EXPOSE 1080 9180
# SIGTERM drains live connections for up to shutdown_timeout (30s by
# default): stop with `docker stop -t 45` so the runtime does not SIGKILL first.
STOPSIGNAL SIGTERM
# Probes the admin_listen (else the first listener) of the mounted config.
HEALTHCHECK --interval=30s --timeout=3s --start-period=5s \
    CMD ["/usr/local/bin/sockpool", "--healthcheck", "-c", "/etc/sockpool/sockpool.ini"]
ENTRYPOINT ["/usr/local/bin/sockpool"]
CMD ["-c", "/etc/sockpool/sockpool.ini"]
