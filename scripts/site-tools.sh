# shellcheck shell=bash
# Locates, and on a fresh Debian machine installs, the external tools sitegen's tests use:
#   lynx (text browser), Java, the Nu HTML Checker (npm package vnu-jar), and moto's server
#   (PyPI package moto[server], a local S3 and CloudFront emulator for the deploy test).
# Source it (the test runner does), then run the tests with the exported variables:
#   CAIRN_LYNX         path of lynx
#   CAIRN_JAVA         path of java
#   CAIRN_VNU_JAR      path of vnu.jar
#   CAIRN_MOTO_SERVER  path of moto_server
# Installs need root (apt-get), the npm registry and PyPI; nothing is committed to the
# repository. node_modules and moto's virtualenv go to a cache folder outside the tree
# ($CAIRN_TOOLS_DIR).

site_tools_log() { echo "site-tools: $*" >&2; }

site_tools_apt() {
    # apt-get install the given packages, updating the package lists once.
    if [ "$(id -u)" != 0 ]; then
        site_tools_log "not root, cannot apt-get install $*"
        return 1
    fi
    if [ -z "${SITE_TOOLS_APT_UPDATED:-}" ]; then
        DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null || return 1
        SITE_TOOLS_APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

site_tools_setup() {
    local root
    root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
    CAIRN_TOOLS_DIR="${CAIRN_TOOLS_DIR:-${HOME:-/root}/.cache/cairn/site-tools}"
    mkdir -p "$CAIRN_TOOLS_DIR"

    if ! command -v lynx >/dev/null 2>&1; then
        site_tools_log "installing lynx"
        site_tools_apt lynx || site_tools_log "could not install lynx"
    fi
    if command -v lynx >/dev/null 2>&1; then
        export CAIRN_LYNX="$(command -v lynx)"
    fi

    if ! command -v java >/dev/null 2>&1; then
        site_tools_log "installing a Java runtime"
        site_tools_apt default-jre-headless || site_tools_log "could not install java"
    fi
    if command -v java >/dev/null 2>&1; then
        export CAIRN_JAVA="$(command -v java)"
    fi

    local jar="$CAIRN_TOOLS_DIR/node_modules/vnu-jar/build/dist/vnu.jar"
    if [ ! -f "$jar" ]; then
        if ! command -v npm >/dev/null 2>&1; then
            site_tools_log "installing npm"
            site_tools_apt npm || site_tools_log "could not install npm"
        fi
        if command -v npm >/dev/null 2>&1; then
            site_tools_log "installing vnu-jar into $CAIRN_TOOLS_DIR"
            (cd "$CAIRN_TOOLS_DIR" && npm install --no-audit --no-fund --silent --prefix "$CAIRN_TOOLS_DIR" vnu-jar@26.9.27 >/dev/null) \
                || site_tools_log "could not install vnu-jar"
        fi
    fi
    if [ -f "$jar" ]; then
        export CAIRN_VNU_JAR="$jar"
    fi

    # moto in server mode: one process answering S3 and CloudFront (the deploy test).
    local moto="$CAIRN_TOOLS_DIR/moto/bin/moto_server"
    if [ ! -x "$moto" ]; then
        if ! python3 -m venv --help >/dev/null 2>&1; then
            site_tools_log "installing python3-venv"
            site_tools_apt python3-venv || site_tools_log "could not install python3-venv"
        fi
        site_tools_log "installing moto[server] into $CAIRN_TOOLS_DIR/moto"
        { python3 -m venv "$CAIRN_TOOLS_DIR/moto" \
            && "$CAIRN_TOOLS_DIR/moto/bin/pip" install --quiet --disable-pip-version-check \
                'moto[server]==5.2.6' >/dev/null; } \
            || site_tools_log "could not install moto[server]"
    fi
    if [ -x "$moto" ]; then
        export CAIRN_MOTO_SERVER="$moto"
    fi
    : "$root"
    site_tools_log "CAIRN_LYNX=${CAIRN_LYNX:-missing} CAIRN_JAVA=${CAIRN_JAVA:-missing} CAIRN_VNU_JAR=${CAIRN_VNU_JAR:-missing} CAIRN_MOTO_SERVER=${CAIRN_MOTO_SERVER:-missing}"
}

site_tools_setup
