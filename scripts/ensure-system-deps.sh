#!/bin/sh
# System packages the tests need that pip cannot install: Debian's chromium, for the clinician page's browser
# tests (Playwright drives /usr/bin/chromium; `playwright install` would download a browser and is never used).
set -eu
if [ -x /usr/bin/chromium ]; then
    exit 0
fi
if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = "0" ]; then
    echo "ensure-system-deps: installing the Debian package 'chromium' (browser tests)" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y chromium >&2 || {
        apt-get update >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium >&2
    }
else
    echo "ensure-system-deps: /usr/bin/chromium is missing; install the Debian package 'chromium'" \
         "(sudo apt-get install -y chromium). The browser tests fail without it." >&2
fi
