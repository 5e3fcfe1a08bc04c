# LMS Badge Bridge: one image for the web server, the workers, the scheduler and the CLI.
#   docker build -t lms-badge-bridge .      (compose.yaml builds it for you: docs/docker.md)
#
# Two stages on plain Debian 12 with its own Python 3.11: the first installs the bridge and its
# dependencies into a virtual environment (/opt/bridge), the second copies that environment into a slim
# image with only the run-time libraries, and no pip, compiler or build cache.
# Written for the classic builder as well as BuildKit (no RUN --mount, no heredocs).

FROM debian:bookworm-slim AS build

# PEM text of extra CA certificates to trust while building, for a network whose proxy intercepts TLS
# on the way to PyPI (docker build --build-arg EXTRA_CA_CERTS="$(cat corp-ca.crt)"). Empty for most.
# Used in this stage only: the final image does not trust them.
ARG EXTRA_CA_CERTS=""

RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
 && rm -rf /var/lib/apt/lists/*
RUN if [ -n "$EXTRA_CA_CERTS" ]; then \
      printf '%s\n' "$EXTRA_CA_CERTS" >>/etc/ssl/certs/ca-certificates.crt; \
    fi

# pip (and setuptools' isolated build) trust the system's bundle, EXTRA_CA_CERTS included.
ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python3 -m venv /opt/bridge

WORKDIR /src
# The dependencies first, from pyproject.toml alone (with a placeholder package), so that a change to the
# code rebuilds only the last layer. The postgres extra brings psycopg 3 (psycopg[binary]).
COPY pyproject.toml README.md ./
RUN mkdir bridge && touch bridge/__init__.py \
 && /opt/bridge/bin/pip install '.[postgres]' \
 && /opt/bridge/bin/pip uninstall -y lms-badge-bridge \
 && rm -rf bridge build *.egg-info
COPY bridge ./bridge
COPY connectors ./connectors
COPY badge_templates ./badge_templates
# The run-time image installs nothing: pip and setuptools stay behind.
RUN /opt/bridge/bin/pip install --no-deps . \
 && /opt/bridge/bin/pip uninstall -y pip setuptools \
 && /opt/bridge/bin/badge-bridge --version


FROM debian:bookworm-slim

# python3: the interpreter the virtual environment was made with (same path, same version).
# libcairo2 and fonts-dejavu-core: badge images are drawn with cairosvg, and the shipped badges' text is set
# in DejaVu Sans. tzdata: the time zones of the `timezone` setting. ca-certificates: HTTPS to the LMSs,
# SMTP over TLS, webhooks.
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 libcairo2 fonts-dejavu-core tzdata ca-certificates \
 && rm -rf /var/lib/apt/lists/*

# An unprivileged user of its own. /data (data_dir) belongs to it: a named volume mounted there starts as
# a copy of this directory, owner and mode included, so the bridge can write its keys into it.
RUN groupadd --gid 10001 bridge \
 && useradd --uid 10001 --gid bridge --no-log-init --create-home --home-dir /home/bridge \
      --shell /usr/sbin/nologin bridge \
 && mkdir /data \
 && chown bridge:bridge /data \
 && chmod 700 /data

COPY --from=build /opt/bridge /opt/bridge
COPY docker/config.toml /etc/badge-bridge/config.toml

ENV PATH=/opt/bridge/bin:$PATH \
    BRIDGE_CONFIG=/etc/badge-bridge/config.toml \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1

USER bridge
WORKDIR /home/bridge
VOLUME /data
EXPOSE 8000

# `docker run IMAGE worker`, `docker run IMAGE db upgrade`, ...: arguments are badge-bridge's.
# No HEALTHCHECK here: only the server answers HTTP (compose.yaml checks its /healthz).
ENTRYPOINT ["badge-bridge"]
CMD ["serve"]
