# One image for both roles: the adapter and the two Lambda function binaries in /app.
#
#   docker build -t lambda-ecs-tasks .
#   docker run -e SERVICE_ROLE=api    -e QUEUE_URL=... -p 8080:8080 lambda-ecs-tasks
#   docker run -e SERVICE_ROLE=worker -e QUEUE_URL=... lambda-ecs-tasks
#   docker run lambda-ecs-tasks sqs --batch-size 5 --queue-url ... -- /app/sleep   (any adapter command)
#
# No `# syntax=` line: BuildKit's built-in Dockerfile frontend reads this file, so a build needs no
# registry beyond the two base images (scripts/image makes those locally when none answers).
#
#   docker build --build-arg PROFILE=quick-release ...   a Cargo profile other than release
#                                                        (the container tests use it: half the build time)
#
# Layers: cargo-chef turns the workspace's manifests and Cargo.lock into a recipe, and the
# dependencies are compiled from the recipe alone, so that layer is rebuilt only when a manifest
# or the lock file changes, not when source code does.

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

FROM rust:${RUST_VERSION}-slim-${DEBIAN_RELEASE} AS chef
# cmake: a fallback for aws-lc-sys (the SDK's TLS crypto) on targets without its prebuilt setup.
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake \
 && rm -rf /var/lib/apt/lists/*
RUN cargo install cargo-chef --locked --version 0.1.77
WORKDIR /src

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
ARG PROFILE=release
COPY --from=planner /src/recipe.json recipe.json
# Dependencies only (those of the three shipped binaries, from the recipe's Cargo.lock), cached
# until a manifest or the lock file changes; the final build's --locked checks the lock is current.
RUN cargo chef cook --profile "$PROFILE" --recipe-path recipe.json --bin adapter --bin enqueue --bin sleep
COPY . .
# Cargo writes the dev profile to target/debug, every other to target/<profile>.
RUN cargo build --profile "$PROFILE" --locked --bin adapter --bin enqueue --bin sleep \
 && dir="target/$([ "$PROFILE" = dev ] && echo debug || echo "$PROFILE")" \
 && mkdir -p /out \
 && cp "$dir/adapter" "$dir/enqueue" "$dir/sleep" /out/

FROM debian:${DEBIAN_RELEASE}-slim AS runtime
# CA certificates: the AWS SDK verifies TLS against the system's roots.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 app \
 && useradd --system --uid 10001 --gid app --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin app
COPY --from=builder /out/ /app/
COPY --chmod=0755 deploy/docker/entrypoint /app/entrypoint
USER 10001:10001
WORKDIR /app
# The adapter's HTTP source (API role). Its admin listener stays on 127.0.0.1:9090, for
# `adapter healthcheck` inside the container only.
EXPOSE 8080
ENV RUST_LOG=info
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 CMD ["/app/adapter", "healthcheck"]
# SERVICE_ROLE=api|worker, or adapter arguments; see deploy/docker/entrypoint.
ENTRYPOINT ["/app/entrypoint"]
