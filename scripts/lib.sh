# Shared by scripts/serve and scripts/test: a local .venv with the pinned emulator.
ensure_venv() {
    if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c 'import sys' 2>/dev/null; then
        rm -rf .venv
        if ! python3 -m venv .venv 2>/dev/null; then
            rm -rf .venv
            if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
                echo "python3 -m venv is missing; installing Debian's python3-venv" >&2
                apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
                python3 -m venv .venv
            else
                echo "error: python3 -m venv failed; install python3-venv (apt-get install python3-venv)" >&2
                exit 1
            fi
        fi
    fi
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -r tests/emulator/requirements.txt
}

# Only scripts/test: the tools of the conformance stage (schemathesis, openapi-python-client) and
# the openssl command the https tests use.
ensure_test_tools() {
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -r tests/conformance/requirements.txt
    # The https connection-lookup tests make their certificates with the openssl command line.
    if ! command -v openssl >/dev/null; then
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
            echo "openssl is missing; installing Debian's openssl" >&2
            apt-get update -qq && apt-get install -y -qq openssl >/dev/null
        else
            echo "error: the tests need the openssl command (apt-get install openssl)" >&2
            exit 1
        fi
    fi
}

# Only scripts/test: what the operator console's browser tests drive (tests/console.rs): Debian's
# chromium and node, and playwright-core from tests/browser/package-lock.json.
ensure_browser_tools() {
    local missing=()
    [ -x /usr/bin/chromium ] || missing+=(chromium)
    command -v node >/dev/null || missing+=(nodejs)
    command -v npm >/dev/null || missing+=(npm)
    if [ "${#missing[@]}" -gt 0 ]; then
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
            echo "installing Debian's ${missing[*]} for the console's browser tests" >&2
            apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
        else
            echo "error: the console's browser tests need ${missing[*]} (apt-get install ${missing[*]})" >&2
            exit 1
        fi
    fi
    if [ ! -d tests/browser/node_modules/playwright-core ]; then
        (cd tests/browser && npm ci --no-audit --no-fund --loglevel=error)
    fi
}
