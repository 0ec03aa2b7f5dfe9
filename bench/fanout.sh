#!/usr/bin/env bash
# Fan-out: no-op `check` of 1, 5, 20 and 50 converged lab hosts in one run (--forks = host
# count). The job is light (packages already in the lab image, time zone, three files) so
# the hosts converge without apt; what is measured is the engine and SSH fan-out.
# Writes bench/results/fanout.json and prints how time grows with the host count.
source "$(dirname "$0")/lib.sh"
build
max=${1:-50}
"$P" lab down >/dev/null
t0=$(now_ms)
"$P" lab up "$max" --login root >/dev/null || { "$P" lab down >/dev/null; exit 1; }
lab_up_ms=$(( $(now_ms) - t0 ))
inv=$(mktemp --suffix=.toml)
trap 'rm -f "$inv"; "$P" lab down >/dev/null' EXIT
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
"$P" -i "$inv" --forks "$max" up >/dev/null

results=()
for n in 1 5 20 "$max"; do
  limit=$(python3 - "$LAB_INVENTORY" "$n" <<'PY'
import sys, tomllib
hosts = tomllib.load(open(sys.argv[1], "rb"))["groups"]["lab"]["hosts"]
print(",".join(hosts[: int(sys.argv[2])]))
PY
)
  runs=()
  for _ in 1 2 3; do
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
    t0=$(now_ms)
    echo "$addresses" | xargs -P "$n" -I{} ssh -o BatchMode=yes -o ControlPath=none \
      -o UserKnownHostsFile="$LAB_DIR/known_hosts" -i "$LAB_DIR/id_ed25519" root@{} true
    floors+=($(( $(now_ms) - t0 )))
  done
  results+=("$n:$(printf '%s\n' "${runs[@]}" | median):$(printf '%s\n' "${floors[@]}" | median)")
done
python3 - "$lab_up_ms" "$RESULTS/fanout.json" "${results[@]}" <<'PY'
import json, sys
lab_up, out, rows = float(sys.argv[1]), sys.argv[2], sys.argv[3:]
pts = [(int(a), float(b), float(c)) for a, b, c in (r.split(":") for r in rows)]
base = pts[0][1]
json.dump({"lab_up_ms": lab_up,
           "noop_check_ms_median": {str(n): ms for n, ms, _ in pts},
           "floor_ssh_true_ms_median": {str(n): f for n, _, f in pts},
           "goal_ms_for_50": 3000}, open(out, "w"), indent=2)
print(f"lab up {pts[-1][0]}: {lab_up/1000:.1f} s")
for n, ms, floor in pts:
    print(f"no-op check of {n:3d} host(s): {ms:6.0f} ms  ({ms/base:4.1f}x one host, {ms/n:5.0f} ms/host)"
          f"  floor (ssh true, parallel) {floor:6.0f} ms  ratio {ms/floor:4.2f}x")
PY
