# djob: djob-api, djob-worker and the example handler plugins on Debian 12.
#
#   docker build -t djob .
#   docker run --rm djob djob-worker --help
#
# Build stage: meson with the -dev packages. Runtime stage: only the shared
# libraries, the daemons, libdjob and the plugins in /usr/local/lib/djob/plugins.
# Not built or run on the machine that wrote it (no Docker engine there).

FROM debian:bookworm-slim AS build
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        gcc libc6-dev pkg-config meson ninja-build \
        librdkafka-dev libmongoc-dev libbson-dev libcjson-dev libcivetweb-dev libmbedtls-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# libdir=lib keeps paths free of the architecture triplet, so DJOB_PLUGINS is
# the same on amd64 and arm64.
RUN meson setup /build --prefix=/usr/local --libdir=lib --buildtype=release -Dtests=false \
    && ninja -C /build \
    && DESTDIR=/install meson install -C /build --no-rebuild \
    && rm -rf /install/usr/local/include /install/usr/local/lib/pkgconfig

FROM debian:bookworm-slim
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        librdkafka1 libmongoc-1.0-0 libbson-1.0-0 libcjson1 libcivetweb1 libmbedcrypto7 \
        ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --home-dir /nonexistent --shell /usr/sbin/nologin djob
COPY --from=build /install/usr/local/ /usr/local/
RUN ldconfig
ENV DJOB_PLUGINS=/usr/local/lib/djob/plugins/djob-handler-file.so,/usr/local/lib/djob/plugins/djob-handler-blockchain.so,/usr/local/lib/djob/plugins/djob-handler-data.so \
    DJOB_FILE_ROOT=/data
RUN mkdir -p /data
USER djob
EXPOSE 3000 4000
CMD ["djob-worker"]
