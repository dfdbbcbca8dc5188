# Release image: docker build -t sagemaker-executor .
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin sagemaker-executor

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --home /var/lib/sagemaker-executor --create-home sagemaker-executor
COPY --from=build /src/target/release/sagemaker-executor /usr/local/bin/sagemaker-executor
USER sagemaker-executor
WORKDIR /var/lib/sagemaker-executor
ENV EXECUTOR_BIND=0.0.0.0:5002 \
    EXECUTOR_DATABASE_URL=sqlite:///var/lib/sagemaker-executor/executor.db \
    EXECUTOR_LOG_FORMAT=json
VOLUME /var/lib/sagemaker-executor
EXPOSE 5002
# Tokens are required on 0.0.0.0: mount a tokens file and set EXECUTOR_TOKENS_FILE.
ENTRYPOINT ["/usr/local/bin/sagemaker-executor"]
CMD ["serve"]
