#!/usr/bin/env bash
# Fresh converge of lab hosts with the seeds/002 job (`upgrade = "full"`) vs the floor: a
# plain shell script over one ssh doing only the same apt work (one `apt-get update`, then
# the upgrade and the job's installs in one `apt-get upgrade` transaction, with the job's
# apt options) on an identical fresh host booted at the same moment. N such pairs per OS;
# in each pair the floor and the job start at the same moment and run side by side, so
# the load of the shared machine (other builds, the other side) hits both alike; the
# ratio reported is the median over the pairs. Then a "first boot" pair: `up` right after
# apt-daily.service was started the way a first boot starts it (a background `apt-get
# update` holding the lists lock), beside a fresh floor host, with how `up` dealt with
# the lock. Then the no-op re-run (time and round trips) and `harden --check` on a
# converged host. Writes bench/results/converge-<os>.json and converge-<os>-profile.json
# (the apt transactions of both sides from the hosts' /var/log/apt/history.log, the job's
# round trips, service starts and stops). Usage: bench/converge.sh [OS] (default
# debian-12; `all` runs each lab OS in turn); N=3 pairs by default; PROVISION_BIN measures
# that binary; BENCH_KEEP_WORK=DIR keeps the runs' reports, debug logs, apt histories and
# journals there. Each OS has its own lab state under the bench's lab dir, and each pair
# a lab of its own in it, booted just before the pair runs.
OS=${1:-debian-12}
N=${N:-3}
if [ "$OS" = all ]; then
  for os in ubuntu-24.04 ubuntu-22.04 debian-13 debian-12; do "$0" "$os"; done
  exit
fi
# Each pair (and the first-boot pair) is a lab of its own under the bench's lab dir,
# booted just before it is measured and removed once measured (the first pair stays for
# the no-op figures): at most two pairs of hosts exist at once, not 2N+2 (disk).
BASE=${PROVISION_LAB_DIR:-/var/lib/provision-lab-bench}/converge-$OS
export PROVISION_LAB_DIR=$BASE
source "$(dirname "$0")/lib.sh"
build
"$P" lab down >/dev/null  # hosts of an older layout of this bench
use_lab() {  # NAME: the lab the helpers (ssh_lab, lab_address) and `$P lab` act on
  export PROVISION_LAB_DIR=$BASE/$1
  LAB_DIR=$PROVISION_LAB_DIR
  LAB_INVENTORY=$LAB_DIR/inventory.toml
}
work=$(mktemp -d)
labs=()
cleanup() {
  for l in "${labs[@]}"; do use_lab "$l"; "$P" lab down >/dev/null || true; done
  if [ -n "${BENCH_KEEP_WORK:-}" ]; then mkdir -p "$BENCH_KEEP_WORK" && cp -a "$work/." "$BENCH_KEEP_WORK/"; fi
  rm -rf "$work"
}
trap cleanup EXIT
# boot NAME: two fresh hosts (root logins: the floor script needs root; the job is the
# same either way) in lab NAME; sets PAIR (their names) and INV (the job's inventory).
boot() {
  use_lab "$1"
  labs+=("$1")
  "$P" lab down >/dev/null
  "$P" lab up 2 --os "$OS" --login root >/dev/null
  INV=$work/$1.toml
  lab_job_inventory "$INV"
  sed -i 's/^upgrade = .*/upgrade = "full"/' "$INV"
  grep -q '^upgrade = "full"' "$INV"
  mapfile -t PAIR < <(python3 - "$LAB_INVENTORY" <<'PY'
import sys, tomllib
print("\n".join(tomllib.load(open(sys.argv[1], "rb"))["groups"]["lab"]["hosts"]))
PY
)
  # Where each host's apt history stands before the timed runs (the image's own entries).
  for h in "${PAIR[@]}"; do
    ssh_lab "$h" 'stat -c %s /var/log/apt/history.log 2>/dev/null || echo 0' >"$work/$h.offset"
  done
}
# Exactly what the job's apt runs with (crates/common/src/apt.rs), nothing else.
APT_OPTS="-o DPkg::Lock::Timeout=600 -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold"

floor_run() {  # HOST -> ms
  local t0; t0=$(now_ms)
  ssh_lab "$1" "$FLOOR"
  echo $(( $(now_ms) - t0 ))
}
job_run() {  # HOST TAG -> ms; report and debug log kept for the profile
  local t0; t0=$(now_ms)
  PROVISION_LOG=info,common=debug,jobs=debug "$P" -i "$INV" --limit "$1" --format json up \
    >"$work/$2.json" 2>"$work/$2.log"
  echo $(( $(now_ms) - t0 ))
}
history_of() {  # HOST -> the host's apt history written since the offset taken at boot
  ssh_lab "$1" "tail -c +\$(( $(cat "$work/$1.offset") + 1 )) /var/log/apt/history.log 2>/dev/null || true"
}

floors=(); jobs=()
for i in $(seq 0 $((N - 1))); do
  boot "pair$i"
  a=${PAIR[0]}; b=${PAIR[1]}
  if [ "$i" = 0 ]; then
    # The apt work the job will do, read from its own plan on a fresh host.
    plan=$("$P" -i "$INV" --limit "$b" --format json check || true)  # exit 2: changes pending
    packages=$(echo "$plan" | python3 -c '
import json, sys
r = json.load(sys.stdin)
names = []
for res in r["hosts"][0]["resources"]:
    for a in res.get("actions", []):
        if a.startswith("apt install "):
            names += [n for n in a.split()[2:] if n not in names]
print(" ".join(names))')
    echo "apt work: update, then upgrade + install of: $packages"
    FLOOR="export DEBIAN_FRONTEND=noninteractive LC_ALL=C NEEDRESTART_MODE=a; apt-get $APT_OPTS -q update >/dev/null && apt-get $APT_OPTS -y -q --no-install-recommends upgrade $packages >/dev/null"
    B=$b; B_LAB=pair0; B_INV=$INV
  fi
  floor_run "$a" >"$work/floor$i.ms" &
  j=$(job_run "$b" "job$i")
  wait $!
  f=$(cat "$work/floor$i.ms")
  floors+=("$f"); jobs+=("$j")
  echo "pair $((i + 1))/$N: floor $f ms, job $j ms"
  history_of "$a" >"$work/floor$i.history"
  history_of "$b" >"$work/job$i.history"
  ssh_lab "$b" 'journalctl -q --no-pager -o short-unix' >"$work/job$i.journal" 2>/dev/null || true
  if [ "$i" != 0 ]; then "$P" lab down >/dev/null; fi
done

# First boot: apt-daily.service started just before `up`, its floor host beside it. The
# lab's minbase images have no APT::Periodic settings (apt-daily.service would do nothing),
# so a runtime drop-in makes it run what a provider image's first boot runs first: a plain
# `apt-get update`, holding the package lists lock, under the real unit's name.
boot firstboot
FIRST_BOOT_FLOOR=${PAIR[0]}; FIRST_BOOT=${PAIR[1]}
ssh_lab "$FIRST_BOOT" 'mkdir -p /run/systemd/system/apt-daily.service.d &&
  printf "[Service]\nExecStart=\nExecStart=/usr/bin/apt-get -q update\n" > /run/systemd/system/apt-daily.service.d/zz-bench.conf &&
  systemctl daemon-reload && systemctl start --no-block apt-daily.service'
floor_run "$FIRST_BOOT_FLOOR" >"$work/firstboot-floor.ms" &
fb=$(job_run "$FIRST_BOOT" firstboot)
wait $!
fbf=$(cat "$work/firstboot-floor.ms")
echo "first boot: floor $fbf ms, job $fb ms"
history_of "$FIRST_BOOT" >"$work/firstboot.history"
"$P" lab down >/dev/null

# The no-op figures on the first pair's converged job host.
use_lab "$B_LAB"; INV=$B_INV

# The hardened host rate-limits SSH (ufw limit: the 6th new connection from one address
# within 30 s is dropped), and `up` just opened several (its commit-confirmed fresh-login
# checks): let the window pass, then space the measured runs. The pauses are not timed.
sleep 30
noop_runs=()
for _ in 1 2 3 4 5; do
  sleep 6
  t0=$(now_ms)
  json=$("$P" -i "$INV" --limit "$B" --format json check)
  noop_runs+=($(( $(now_ms) - t0 )))
done
round_trips=$(echo "$json" | python3 -c 'import json,sys; print(json.load(sys.stdin)["hosts"][0]["round_trips"])')
noop=$(printf '%s\n' "${noop_runs[@]}" | median)

harden_runs=()
for _ in 1 2 3; do
  sleep 6
  t0=$(now_ms)
  "$P" -i "$INV" --limit "$B" harden --check >/dev/null
  harden_runs+=($(( $(now_ms) - t0 )))
done
harden=$(printf '%s\n' "${harden_runs[@]}" | median)

# Floor of a no-op: one bare SSH login (`true`) to the same hardened host.
addr_b=$(lab_address "$B")
login_runs=()
for _ in 1 2 3; do
  sleep 6
  t0=$(now_ms)
  ssh_to "$addr_b" true
  login_runs+=($(( $(now_ms) - t0 )))
done
login=$(printf '%s\n' "${login_runs[@]}" | median)

python3 "$ROOT/bench/converge_report.py" "$OS" "$work" "$RESULTS" "$N" "$fb" "$fbf" \
  "${floors[*]}" "${jobs[*]}" "$noop" "$round_trips" "$harden" "$login"
