#!/bin/sh
# Headless Chromium + ChromeDriver for the human-eval browser test (Debian/Ubuntu packages).
# Does nothing when both are already on PATH; where they cannot be installed, that one test is skipped.
command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1 && exit 0
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo -n"
if command -v apt-get >/dev/null 2>&1; then
    $SUDO apt-get install -y -q chromium chromium-driver >/dev/null 2>&1 \
        || { $SUDO apt-get update -q >/dev/null 2>&1 && $SUDO apt-get install -y -q chromium chromium-driver >/dev/null 2>&1; }
fi
if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
    echo "chromium: $(chromium --version 2>/dev/null)"
else
    echo "note: chromium + chromedriver not installed; the browser test will be skipped" >&2
fi
exit 0
