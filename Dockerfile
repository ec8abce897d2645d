# runboat's container image: Debian 12 (bookworm) slim, built with the
# project's own scripts, run as a non-root user.
#   docker build -t runboat .
#   docker run -v $PWD/runboat.toml:/etc/runboat/runboat.toml:ro runboat
# The configuration must listen on every address (listen = ":8000"); the
# default kubefiles are in the image (/opt/runboat/share/runboat/kubefiles)
# and are used when [build] names none. test/e2e/test_dockerfile.py keeps
# this file in step with scripts/ and with the libraries runboat links.

FROM debian:12-slim AS build
WORKDIR /src
COPY scripts/install-deps.sh scripts/
RUN bash scripts/install-deps.sh --build
COPY . .
# the release build of scripts/test.sh, then the install rules
RUN cmake -S . -B build -G Ninja -DRUNBOAT_WERROR=ON \
 && cmake --build build \
 && cmake --install build --prefix /opt/runboat

FROM debian:12-slim
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      ca-certificates libcurl4 libjansson4 libssl3 libstdc++6 libtomlplusplus3 \
      libuv1 libwslay1 libyaml-0-2 zlib1g \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /opt/runboat /opt/runboat
RUN useradd --system --uid 10001 --user-group --home-dir /nonexistent \
      --shell /usr/sbin/nologin runboat
USER 10001:10001
ENV PATH=/opt/runboat/bin:$PATH
EXPOSE 8000
ENTRYPOINT ["/opt/runboat/bin/runboat"]
CMD ["--config", "/etc/runboat/runboat.toml"]
