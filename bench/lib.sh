# Shared helpers for the benchmarks. Source it; needs root (the lab).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
P="$ROOT/target/release/provision"
# The benchmarks' own lab state (PROVISION_LAB_DIR), so their `lab down` never touches
# hosts of another lab on the machine (tests use the default one).
export PROVISION_LAB_DIR=${PROVISION_LAB_DIR:-/var/lib/provision-lab-bench}
LAB_DIR=$PROVISION_LAB_DIR
LAB_INVENTORY=$LAB_DIR/inventory.toml
RESULTS="$ROOT/bench/results"

build() { (cd "$ROOT" && cargo build --release -q -p provision); }

# now_ms: wall clock in milliseconds.
now_ms() { date +%s%3N; }

# lab_vars FILE: the lab's inventory plus the seeds/002 job vars, written to FILE.
lab_job_inventory() {
  local out=$1
  { cat "$LAB_INVENTORY"; echo; cat "$ROOT/crates/jobs/src/demo-vars.toml"; } > "$out"
}

# ssh_lab HOST CMD...: plain ssh to a lab host (no multiplexing).
ssh_lab() {
  local host=$1; shift
  local addr
  addr=$(python3 - "$LAB_INVENTORY" "$host" <<'PY'
import sys, tomllib
inv = tomllib.load(open(sys.argv[1], "rb"))
print(inv["hosts"][sys.argv[2]]["address"])
PY
)
  ssh -o BatchMode=yes -o ControlPath=none -o UserKnownHostsFile="$LAB_DIR/known_hosts" \
      -i "$LAB_DIR/id_ed25519" "root@$addr" "$@"
}

# median of numbers on stdin
median() { sort -n | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }
