# shellcheck shell=bash
# Locates, and on a fresh Debian machine installs, what the account pages' browser tests use:
#   Chromium (Debian's package), Node.js with npm, and from npm playwright-core (to drive
#   Chromium) and Lighthouse 12 (to audit the pages); lynx, Java and the Nu HTML Checker come
#   from scripts/site-tools.sh.
# Source it (scripts/test does), then run the tests with the exported variables:
#   CAIRN_CHROMIUM        path of chromium
#   CAIRN_NODE            path of node
#   CAIRN_BROWSER_TOOLS   a folder whose node_modules holds playwright-core and lighthouse
# Installs need root (apt-get) and the npm registry; nothing is committed to the repository.

browser_tools_log() { echo "browser-tools: $*" >&2; }

browser_tools_apt() {
    if [ "$(id -u)" != 0 ]; then
        browser_tools_log "not root, cannot apt-get install $*"
        return 1
    fi
    if [ -z "${BROWSER_TOOLS_APT_UPDATED:-}" ]; then
        DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null || return 1
        BROWSER_TOOLS_APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

browser_tools_setup() {
    local dir="${CAIRN_BROWSER_TOOLS:-${HOME:-/root}/.cache/cairn/browser-tools}"
    mkdir -p "$dir"
    if ! command -v chromium >/dev/null 2>&1; then
        browser_tools_log "installing chromium"
        browser_tools_apt chromium || browser_tools_log "could not install chromium"
    fi
    if command -v chromium >/dev/null 2>&1; then
        export CAIRN_CHROMIUM="$(command -v chromium)"
    fi
    if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
        browser_tools_log "installing nodejs and npm"
        browser_tools_apt nodejs npm || browser_tools_log "could not install node"
    fi
    if command -v node >/dev/null 2>&1; then
        export CAIRN_NODE="$(command -v node)"
    fi
    if [ ! -f "$dir/node_modules/playwright-core/package.json" ] ||
        [ ! -f "$dir/node_modules/lighthouse/package.json" ]; then
        if command -v npm >/dev/null 2>&1; then
            browser_tools_log "installing playwright-core and lighthouse into $dir"
            [ -f "$dir/package.json" ] || echo '{"name": "cairn-browser-tools", "private": true}' >"$dir/package.json"
            (cd "$dir" && npm install --no-audit --no-fund --silent \
                playwright-core@1.65.2 lighthouse@12.8.2 >/dev/null) ||
                browser_tools_log "could not install playwright-core and lighthouse"
        fi
    fi
    if [ -f "$dir/node_modules/playwright-core/package.json" ]; then
        export CAIRN_BROWSER_TOOLS="$dir"
    fi
    browser_tools_log "CAIRN_CHROMIUM=${CAIRN_CHROMIUM:-missing} CAIRN_NODE=${CAIRN_NODE:-missing} CAIRN_BROWSER_TOOLS=${CAIRN_BROWSER_TOOLS:-missing}"
}

browser_tools_setup
