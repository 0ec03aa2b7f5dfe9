#!/usr/bin/env bash
# Fresh converge of one lab host with the seeds/002 job vs the floor (a plain shell script
# over one ssh doing only the same apt work on an identical fresh host), then the no-op
# re-run (time and round trips) and `harden --check` on the converged host.
# Prints ratios against the floor measured in the same run; writes
# bench/results/converge-<os>.json. Usage: bench/converge.sh [OS] (default debian-12; `all`
# runs each lab OS in turn).
source "$(dirname "$0")/lib.sh"
OS=${1:-debian-12}
if [ "$OS" = all ]; then
  for os in ubuntu-24.04 ubuntu-22.04 debian-13 debian-12; do "$0" "$os"; done
  exit
fi
build
"$P" lab down >/dev/null
# Root logins on both (the floor script needs root; the job is the same either way).
"$P" lab up 2 --os "$OS" --login root >/dev/null
inv=$(mktemp --suffix=.toml)
trap 'rm -f "$inv"; "$P" lab down >/dev/null' EXIT
lab_job_inventory "$inv"
# Two identical fresh hosts: A gets the floor script, B gets `provision up`.
read -r A B < <(python3 - "$LAB_INVENTORY" <<'PY'
import sys, tomllib
print(" ".join(tomllib.load(open(sys.argv[1], "rb"))["groups"]["lab"]["hosts"][:2]))
PY
)

# The apt work the job will do, read from its own plan on the fresh host.
plan=$("$P" -i "$inv" --limit "$B" --format json check || true)  # exit 2: changes pending
packages=$(echo "$plan" | python3 -c '
import json, sys
r = json.load(sys.stdin)
names = []
for res in r["hosts"][0]["resources"]:
    for a in res.get("actions", []):
        if a.startswith("apt install "):
            names += [n for n in a.split()[2:] if n not in names]
print(" ".join(names))')
echo "apt work: $packages"

t0=$(now_ms)
ssh_lab "$A" "export DEBIAN_FRONTEND=noninteractive NEEDRESTART_MODE=a; apt-get -q update >/dev/null && apt-get -y -q --no-install-recommends install $packages >/dev/null"
floor=$(( $(now_ms) - t0 ))

t0=$(now_ms)
"$P" -i "$inv" --limit "$B" up >/dev/null
converge=$(( $(now_ms) - t0 ))

# The hardened host rate-limits SSH (ufw limit: the 6th new connection from one address
# within 30 s is dropped), and `up` just opened several (its commit-confirmed fresh-login
# checks): let the window pass, then space the measured runs. The pauses are not timed.
sleep 30
noop_runs=()
for _ in 1 2 3 4 5; do
  sleep 6
  t0=$(now_ms)
  json=$("$P" -i "$inv" --limit "$B" --format json check)
  noop_runs+=($(( $(now_ms) - t0 )))
done
round_trips=$(echo "$json" | python3 -c 'import json,sys; print(json.load(sys.stdin)["hosts"][0]["round_trips"])')
noop=$(printf '%s\n' "${noop_runs[@]}" | median)

harden_runs=()
for _ in 1 2 3; do
  sleep 6
  t0=$(now_ms)
  "$P" -i "$inv" --limit "$B" harden --check >/dev/null
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

python3 - "$floor" "$converge" "$noop" "$round_trips" "$harden" "$RESULTS/converge-$OS.json" "$login" "$OS" <<'PY'
import json, sys
floor, conv, noop, rt, harden = map(float, sys.argv[1:6])
login = float(sys.argv[7])
r = {
  "os": sys.argv[8],
  "ssh_login_floor_ms": login, "noop_check_vs_login": round(noop / login, 3),
  "floor_apt_ms": floor, "converge_ms": conv, "converge_vs_floor": round(conv / floor, 3),
  "noop_check_ms_median": noop, "noop_round_trips": int(rt), "harden_check_ms_median": harden,
  "goals": {"converge_vs_floor": 1.15, "noop_check_ms": 500, "noop_round_trips": 3, "harden_check_ms": 1000},
}
json.dump(r, open(sys.argv[6], "w"), indent=2)
print(f"== {sys.argv[8]}")
print(f"fresh converge  {conv/1000:6.1f} s   floor (plain apt) {floor/1000:6.1f} s   ratio {conv/floor:.2f}x (goal <= 1.15x)")
print(f"no-op check     {noop:6.0f} ms  round trips {int(rt)} (goals <= 500 ms, <= 3); bare ssh login {login:.0f} ms, ratio {noop/login:.2f}x")
print(f"harden --check  {harden:6.0f} ms  (goal <= 1000 ms)")
PY
