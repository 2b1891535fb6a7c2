#!/usr/bin/env bash
# Debian packages the browser check of the built book needs: headless Chromium and its driver.
# Idempotent. Needs root or sudo: without either it says so in one line and skips (the browser test then skips too).
# (GPAW's build libraries: scripts/install_gpaw.sh.)
set -euo pipefail
packages=(chromium chromium-driver)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -eq 0 ]; then sudo=""; elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then sudo="sudo"; else
    echo "install_system_deps: skipped: apt-get install ${missing[*]} needs root or sudo; the browser test will skip"
    exit 0
fi
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "installed: ${missing[*]}"
