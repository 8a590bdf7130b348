# syntax=docker/dockerfile:1
# Images of pgwolf and pgwolf-controller, from one build stage:
#   docker build --target pgwolf            -t pgwolf:0.1.0 .
#   docker build --target pgwolf-controller -t pgwolf-controller:0.1.0 .
# Both binaries link only glibc and libgcc_s (checked with ldd), which the
# distroless "cc" base carries; building on the same Debian release keeps
# the glibc versions equal. The base's nonroot user (65532) is the UID the
# controller's manifests run pods as.

FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p pgwolf --bin pgwolf \
 && cargo build --release --locked -p pgwolf-controller --bin pgwolf-controller \
 && install -D target/release/pgwolf /out/pgwolf \
 && install -D target/release/pgwolf-controller /out/pgwolf-controller

FROM gcr.io/distroless/cc-debian12:nonroot AS pgwolf
COPY --from=build /out/pgwolf /usr/local/bin/pgwolf
USER 65532:65532
# Client connections; /healthz, /readyz, /metrics.
EXPOSE 6432 9930
ENTRYPOINT ["/usr/local/bin/pgwolf"]
CMD ["run", "--config", "/etc/pgwolf/pgwolf.toml"]

FROM gcr.io/distroless/cc-debian12:nonroot AS pgwolf-controller
COPY --from=build /out/pgwolf-controller /usr/local/bin/pgwolf-controller
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/pgwolf-controller"]
CMD ["run"]
