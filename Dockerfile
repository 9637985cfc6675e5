# ecs-operator image: a multi-stage build with the dependencies in their own cached layer,
# a minimal non-root runtime image, and the version baked into the binary (Cargo.toml;
# `ecs-operator --version`). No Docker engine runs on the development machines or in CI:
# `make test` runs this file's build command (`make image-build`) and checks the version,
# but the image itself is built wherever a Docker engine is.
FROM rust:1.95-bookworm AS build
WORKDIR /src
# Dependencies first: this layer is reused as long as Cargo.toml and Cargo.lock stay the same.
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
    && cargo build --release --locked --bin ecs-operator \
    && rm -rf src
COPY src ./src
RUN touch src/main.rs src/lib.rs && cargo build --release --locked --bin ecs-operator

FROM gcr.io/distroless/cc-debian12:nonroot
LABEL org.opencontainers.image.title="ecs-operator" \
      org.opencontainers.image.description="Manage Amazon ECS from Kubernetes"
COPY --from=build /src/target/release/ecs-operator /usr/local/bin/ecs-operator
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/ecs-operator"]
CMD ["run"]
