#!/bin/sh
# System packages the tests need that pip cannot install, each checked and installed only when missing:
# - Debian's chromium (/usr/bin/chromium), for the clinician page's browser tests (Playwright drives it;
#   `playwright install` would download a browser and is never used);
# - promtool, from Debian's prometheus package, which checks and unit-tests deploy/prometheus/alerts.yml.
set -eu

missing=""
[ -x /usr/bin/chromium ] || missing="$missing chromium"
command -v promtool >/dev/null 2>&1 || missing="$missing prometheus"
[ -n "$missing" ] || exit 0

if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = "0" ]; then
    echo "ensure-system-deps: installing the Debian package(s)$missing" >&2
    # shellcheck disable=SC2086 (one word per package)
    DEBIAN_FRONTEND=noninteractive apt-get install -y $missing >&2 || {
        apt-get update >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y $missing >&2
    }
else
    echo "ensure-system-deps: missing Debian package(s)$missing; install them" \
         "(sudo apt-get install -y$missing). The browser tests need chromium, the rules tests promtool." >&2
fi
