# Shared helpers for the benchmarks. Source it; needs root (the lab).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# PROVISION_BIN: measure that binary instead of building this checkout's release binary.
P=${PROVISION_BIN:-$ROOT/target/release/provision}
# The benchmarks' own lab state (PROVISION_LAB_DIR), so their `lab down` never touches
# hosts of another lab on the machine (tests use the default one).
export PROVISION_LAB_DIR=${PROVISION_LAB_DIR:-/var/lib/provision-lab-bench}
LAB_DIR=$PROVISION_LAB_DIR
LAB_INVENTORY=$LAB_DIR/inventory.toml
RESULTS="$ROOT/bench/results"

build() { [ -n "${PROVISION_BIN:-}" ] || (cd "$ROOT" && cargo build --release -q -p provision); }

# now_ms: wall clock in milliseconds.
now_ms() { date +%s%3N; }

# lab_vars FILE: the lab's inventory plus the seeds/002 job vars, written to FILE.
lab_job_inventory() {
  local out=$1
  { cat "$LAB_INVENTORY"; echo; cat "$ROOT/crates/jobs/src/demo-vars.toml"; } > "$out"
}

# lab_address HOST: the host's address in the lab's inventory.
lab_address() {
  python3 - "$LAB_INVENTORY" "$1" <<'PY'
import sys, tomllib
inv = tomllib.load(open(sys.argv[1], "rb"))
print(inv["hosts"][sys.argv[2]]["address"])
PY
}

# ssh_to ADDRESS CMD...: plain ssh as root to a lab address (no multiplexing, no lookup:
# what timed floors run).
ssh_to() {
  local addr=$1; shift
  ssh -o BatchMode=yes -o ControlPath=none -o UserKnownHostsFile="$LAB_DIR/known_hosts" \
      -i "$LAB_DIR/id_ed25519" "root@$addr" "$@"
}

# ssh_lab HOST CMD...: plain ssh to a lab host by its inventory name.
ssh_lab() {
  local host=$1; shift
  ssh_to "$(lab_address "$host")" "$@"
}

# median of numbers on stdin
median() { sort -n | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }
