#!/usr/bin/env bash
# Fan-out: no-op `check` of 1, 5, 20 and 50 converged lab hosts in one run (--forks = host
# count), against parallel bare logins to the same hosts in the same run (the floor).
# The job is the seeds/002 job (`JOB=light`: packages already in the image, time zone,
# three files, hardening and Docker off — the engine and SSH fan-out alone).
# Writes bench/results/fanout[-light].json and prints how time grows with the host count.
# Usage: bench/fanout.sh [MAX_HOSTS] (default 50; the counts above MAX_HOSTS are skipped).
source "$(dirname "$0")/lib.sh"
build
max=${1:-50}
JOB=${JOB:-seeds}
"$P" lab down >/dev/null
t0=$(now_ms)
"$P" lab up "$max" --login root >/dev/null || { "$P" lab down >/dev/null; exit 1; }
lab_up_ms=$(( $(now_ms) - t0 ))
inv=$(mktemp --suffix=.toml)
trap 'rm -f "$inv"; "$P" lab down >/dev/null' EXIT
if [ "$JOB" = light ]; then
  out_name=fanout-light
  pause=0
  { cat "$LAB_INVENTORY"; cat <<'TOML'

[vars]
timezone = "Etc/UTC"
packages = ["curl", "sudo", "openssh-server"]
files = [
  { path = "/etc/provision-bench/a.conf", content = "a = 1\n" },
  { path = "/etc/provision-bench/b.conf", content = "b = 2\n", mode = "0600" },
  { path = "/etc/motd", content = "managed by provision\n" },
]
[vars.hardening]
enabled = false
[vars.docker]
enabled = false
TOML
  } > "$inv"
else
  out_name=fanout
  # The hardened hosts limit new SSH connections (6 within 30 s): the measured runs are
  # spaced (the pauses are not timed).
  pause=6
  lab_job_inventory "$inv"
fi
"$P" -i "$inv" --forks "$max" up >/dev/null
[ "$pause" -eq 0 ] || sleep 30

results=()
for n in 1 5 20 50; do
  [ "$n" -le "$max" ] || continue
  limit=$(python3 - "$LAB_INVENTORY" "$n" <<'PY'
import sys, tomllib
hosts = tomllib.load(open(sys.argv[1], "rb"))["groups"]["lab"]["hosts"]
print(",".join(hosts[: int(sys.argv[2])]))
PY
)
  runs=()
  for _ in 1 2 3; do
    sleep "$pause"
    t0=$(now_ms)
    code=0
    "$P" -i "$inv" --limit "$limit" --forks "$n" check >/dev/null || code=$?
    runs+=($(( $(now_ms) - t0 )))
    [ "$code" -eq 0 ] || { echo "check of $n hosts exited $code (not converged?)" >&2; exit 1; }
  done
  # Floor: one plain ssh login running `true` per host, all at once (what any SSH-based
  # tool pays before doing anything).
  addresses=$(python3 - "$LAB_INVENTORY" "$limit" <<'PY'
import sys, tomllib
inv = tomllib.load(open(sys.argv[1], "rb"))
print("\n".join(inv["hosts"][h]["address"] for h in sys.argv[2].split(",")))
PY
)
  floors=()
  for _ in 1 2 3; do
    sleep "$pause"
    t0=$(now_ms)
    echo "$addresses" | xargs -P "$n" -I{} ssh -o BatchMode=yes -o ControlPath=none \
      -o UserKnownHostsFile="$LAB_DIR/known_hosts" -i "$LAB_DIR/id_ed25519" root@{} true
    floors+=($(( $(now_ms) - t0 )))
  done
  results+=("$n:$(printf '%s\n' "${runs[@]}" | median):$(printf '%s\n' "${floors[@]}" | median)")
done
python3 - "$lab_up_ms" "$RESULTS/$out_name.json" "$JOB" "${results[@]}" <<'PY'
import json, sys
lab_up, out, job, rows = float(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4:]
pts = [(int(a), float(b), float(c)) for a, b, c in (r.split(":") for r in rows)]
base = pts[0][1]
json.dump({"job": job, "lab_up_ms": lab_up,
           "noop_check_ms_median": {str(n): ms for n, ms, _ in pts},
           "floor_ssh_true_ms_median": {str(n): f for n, _, f in pts},
           "noop_check_vs_logins": {str(n): round(ms / f, 3) for n, ms, f in pts},
           "goal_vs_logins": 1.2, "goal_ms_for_50": 3000}, open(out, "w"), indent=2)
print(f"lab up {pts[-1][0]}: {lab_up/1000:.1f} s")
for n, ms, floor in pts:
    print(f"no-op check of {n:3d} host(s): {ms:6.0f} ms  ({ms/base:4.1f}x one host, {ms/n:5.0f} ms/host)"
          f"  floor (ssh true, parallel) {floor:6.0f} ms  ratio {ms/floor:4.2f}x")
PY
