#!/usr/bin/env bash
# No-op cost under both upgrade policies: one lab host of OS converged with the seeds/002
# job (`upgrade = "security"`, then `upgrade = "full"`), a no-op `check` timed against a
# bare `ssh host true` to the same host, alternating, in the same run (the floor).
# Writes bench/results/noop-<os>.json. Usage: bench/noop.sh [OS] (default debian-12; `all`
# runs each lab OS in turn).
source "$(dirname "$0")/lib.sh"
OS=${1:-debian-12}
RUNS=${RUNS:-5}
if [ "$OS" = all ]; then
  for os in ubuntu-24.04 ubuntu-22.04 debian-13 debian-12; do "$0" "$os"; done
  exit
fi
build
"$P" lab down >/dev/null
"$P" lab up 1 --os "$OS" --login root >/dev/null
inv=$(mktemp --suffix=.toml)
trap 'rm -f "$inv"; "$P" lab down >/dev/null' EXIT
host=$(python3 - "$LAB_INVENTORY" <<'PY'
import sys, tomllib
print(tomllib.load(open(sys.argv[1], "rb"))["groups"]["lab"]["hosts"][0])
PY
)

addr=$(lab_address "$host")

rows=()
for policy in security full; do
  lab_job_inventory "$inv"
  sed -i "s/^upgrade = .*/upgrade = \"$policy\"/" "$inv"
  grep -q "^upgrade = \"$policy\"" "$inv"
  [ "${#rows[@]}" -eq 0 ] || sleep 30  # the rate limit's window of the last measured logins
  "$P" -i "$inv" up >/dev/null
  # The hardened host limits new SSH connections (6 within 30 s): let the window of the
  # `up` pass, then space the measured logins (the pauses are not timed).
  sleep 30
  noop_runs=(); login_runs=()
  for _ in $(seq "$RUNS"); do
    sleep 6
    t0=$(now_ms)
    json=$("$P" -i "$inv" --format json check)
    noop_runs+=($(( $(now_ms) - t0 )))
    sleep 6
    t0=$(now_ms)
    ssh_to "$addr" true
    login_runs+=($(( $(now_ms) - t0 )))
  done
  round_trips=$(echo "$json" | python3 -c 'import json,sys; print(json.load(sys.stdin)["hosts"][0]["round_trips"])')
  noop=$(printf '%s\n' "${noop_runs[@]}" | median)
  login=$(printf '%s\n' "${login_runs[@]}" | median)
  rows+=("$policy:$noop:$login:$round_trips")
done

python3 - "$RESULTS/noop-$OS.json" "$OS" "${rows[@]}" <<'PY'
import json, sys
out, os_name, rows = sys.argv[1], sys.argv[2], sys.argv[3:]
r = {"os": os_name, "goal_noop_vs_login": 1.3, "policies": {}}
print(f"== {os_name}")
for row in rows:
    policy, noop, login, rt = row.split(":")
    noop, login = float(noop), float(login)
    r["policies"][policy] = {"noop_check_ms_median": noop, "ssh_login_floor_ms": login,
                             "noop_check_vs_login": round(noop / login, 3), "noop_round_trips": int(rt)}
    print(f"upgrade = {policy:8}  no-op check {noop:5.0f} ms ({rt} round trip)  bare ssh login {login:4.0f} ms  ratio {noop/login:.2f}x (goal <= 1.3x)")
json.dump(r, open(out, "w"), indent=2)
PY
