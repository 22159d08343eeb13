#!/usr/bin/env bash
# Install the Debian 12 packages kdindex needs to build, test, demo and benchmark.
# Idempotent and quiet when everything is already installed.
set -euo pipefail

PKGS=(
  postgresql-15 postgresql-server-dev-15 libopenblas-dev libipc-run-perl
  dataset-fashion-mnist python3-numpy python3-psycopg2 python3-matplotlib
  python3-faiss build-essential
)
# Node.js for the client check (test/clients/node). Any node and npm on PATH do:
# NodeSource's nodejs bundles npm and conflicts with Debian's npm package.
command -v node >/dev/null 2>&1 || PKGS+=(nodejs)
command -v npm >/dev/null 2>&1 || PKGS+=(npm)

missing=()
for p in "${PKGS[@]}"; do
  status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
  if [ "$status" != "installed" ]; then
    missing+=("$p")
  fi
done

[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "deps.sh: missing Debian packages: ${missing[*]}" >&2
  echo "deps.sh: install them as root with:" >&2
  echo "    apt-get update && apt-get install -y ${missing[*]}" >&2
  exit 1
fi

echo "deps.sh: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y "${missing[@]}"
