#!/bin/sh
# Time per certificate issuance against a local Pebble (PEBBLE_VA_NOSLEEP=1) and the
# renewal check over 100 stored certificates with none due. Needs `pebble` installed
# (apt-get install pebble) and root (installs go through the local transport as root).
# Usage: bench/acme.sh [ISSUANCES]   (default 20) → bench/results/acme.json
#
# The benchmark runs with Debian's default PATH, as the renewal timer does on a host: a
# developer PATH with pyenv shims adds ~200 ms to every python3 start (the HTTP-01
# temporary responder).
set -eu
cd "$(dirname "$0")/.."
cargo build -q -p provision-certs --features testing --example acme_bench
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  target/debug/examples/acme_bench bench/results/acme.json "${1:-20}"
