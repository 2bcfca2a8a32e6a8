# Build: docker build -t sockudo .
# Run:   docker run --ulimit memlock=-1 --ulimit nofile=1048576 -p 6001:6001 -p 9601:9601 sockudo
FROM rust:1-bookworm AS build
WORKDIR /src
# libclang-dev: bindgen for the xdelta3 crate (delta compression).
RUN apt-get update && apt-get install -y --no-install-recommends libclang-dev && rm -rf /var/lib/apt/lists/*
COPY . .
RUN cargo build --release --bin sockudo

FROM debian:bookworm-slim
RUN useradd --system --uid 10001 sockudo
COPY --from=build /src/target/release/sockudo /usr/local/bin/sockudo
COPY config/ /etc/sockudo/
USER sockudo
EXPOSE 6001 9601
ENTRYPOINT ["/usr/local/bin/sockudo"]
