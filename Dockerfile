# Placeholder until the packaging issue: a multi-stage build with a cached dependency layer,
# a minimal non-root runtime image and the version baked in. No Docker engine runs on the
# development machines, so CI tests the build command itself (`cargo build --release`).
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin ecs-operator

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/ecs-operator /ecs-operator
USER 65532:65532
ENTRYPOINT ["/ecs-operator"]
CMD ["run"]
