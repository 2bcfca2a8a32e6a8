# syntax=docker/dockerfile:1
# Build: docker build -t sockudo .
# Run:   docker run --ulimit memlock=-1 --ulimit nofile=1048576 -p 6001:6001 -p 9601:9601 \
#          -v $PWD/my-config.toml:/etc/sockudo/config.toml:ro sockudo
# glommio needs io_uring (Docker's default seccomp profile allows it from 25.0 on; older engines need
# --security-opt seccomp=unconfined) and locked memory for its rings (--ulimit memlock=-1).

FROM rust:1-bookworm AS build
WORKDIR /src
# libclang-dev: bindgen for the xdelta3 crate (delta compression).
RUN apt-get update && apt-get install -y --no-install-recommends libclang-dev && rm -rf /var/lib/apt/lists/*
COPY . .
RUN cargo build --release --locked --bin sockudo \
    && strip target/release/sockudo

FROM debian:bookworm-slim
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin sockudo
COPY --from=build /src/target/release/sockudo /usr/local/bin/sockudo
# The configuration the server reads: CONFIG_FILE points at it (mount your own over it).
COPY config/config.toml /etc/sockudo/config.toml
ENV CONFIG_FILE=/etc/sockudo/config.toml \
    HOST=0.0.0.0 \
    PORT=6001 \
    LOG_COLORS_ENABLED=false
USER sockudo
EXPOSE 6001 9601
# SIGTERM drains (503 on /up for shutdown_grace_period, then 4200): give `docker stop -t` more than that.
STOPSIGNAL SIGTERM
# /up answers 200 while serving and 503 DRAINING during shutdown; no curl needed in the image.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["/bin/bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/${PORT:-6001} && printf 'GET /up HTTP/1.0\\r\\nHost: localhost\\r\\n\\r\\n' >&3 && head -n1 <&3 | grep -q ' 200 '"]
ENTRYPOINT ["/usr/local/bin/sockudo"]
