# syntax=docker/dockerfile:1.7
# The production image: the smol runtime (`telegram-bots`) on distroless, as non-root,
# without the demo's fake Telegram (the `demo` feature).
#   docker build -t your-registry/telegram-bots:latest .

FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p telegram-bots-smol --bin telegram-bots --no-default-features \
    && cp target/release/telegram-bots /telegram-bots

# glibc, libgcc and CA certificates, nothing else; uid 65532.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /telegram-bots /usr/local/bin/telegram-bots
USER 65532:65532
EXPOSE 8002
ENTRYPOINT ["/usr/local/bin/telegram-bots"]
CMD ["run"]
