#!/usr/bin/env python3
"""bench/converge.sh's results: the ratios and the profile of where the job's time went.

Usage (from converge.sh): converge_report.py OS WORKDIR RESULTS N FIRSTBOOT_MS
    FIRSTBOOT_FLOOR_MS "FLOOR_MS..." "JOB_MS..." NOOP_MS ROUND_TRIPS HARDEN_MS LOGIN_MS
"""
import datetime
import json
import pathlib
import re
import statistics
import sys

GOAL = 1.05

# Units whose stops, starts and reloads the profile counts (systemd's messages name the
# unit, or on older systemd only its description).
UNITS = {
    "ssh": r"ssh\.service|ssh\.socket|OpenBSD Secure Shell",
    "docker": r"docker\.service|docker\.socket|Docker Application Container Engine",
    "containerd": r"containerd\.service|containerd container runtime",
    "fail2ban": r"fail2ban\.service|Fail2Ban Service",
    "ufw": r"ufw\.service|Uncomplicated firewall",
    "unattended-upgrades": r"unattended-upgrades\.service|Unattended Upgrades Shutdown",
    "apt-daily": r"apt-daily\.service|Daily apt download activities",
    "systemd-reexec": r"Reexecuting|Reexecution requested",
}


def transactions(text):
    """apt history entries: (seconds, command line) each."""
    out = []
    for block in text.split("\n\n"):
        fields = dict(
            line.split(": ", 1) for line in block.strip().splitlines() if ": " in line
        )
        if "Start-Date" not in fields:
            continue
        fmt = "%Y-%m-%d  %H:%M:%S"
        start = datetime.datetime.strptime(fields["Start-Date"], fmt)
        end = fields.get("End-Date")
        secs = (datetime.datetime.strptime(end, fmt) - start).total_seconds() if end else None
        out.append({"seconds": secs, "commandline": fields.get("Commandline", "")})
    return out


def round_trips(log):
    """The job's round trips from its debug log: seconds from each to the next (the last
    to the end of the log), in order."""
    stamps = []
    last = None
    for line in log.splitlines():
        m = re.match(r"(\S+Z)\s", line)
        if not m:
            continue
        t = datetime.datetime.fromisoformat(m.group(1).replace("Z", "+00:00"))
        last = t
        if "round trip" in line:
            b = re.search(r"bytes=(\d+)", line)
            stamps.append((t, int(b.group(1)) if b else None))
    out = []
    for k, (t, size) in enumerate(stamps):
        nxt = stamps[k + 1][0] if k + 1 < len(stamps) else last
        out.append({"seconds": round((nxt - t).total_seconds(), 2), "script_bytes": size})
    return out


def restarts(journal):
    counts = {}
    for line in journal.splitlines():
        if "systemd[1]" not in line:
            continue
        for unit, pat in UNITS.items():
            if not re.search(pat, line):
                continue
            for verb in ("Stopping", "Starting", "Reloading", "Reexecuting"):
                if f"{verb} " in line or line.rstrip().endswith(verb + "."):
                    key = f"{unit}:{verb.lower()}"
                    counts[key] = counts.get(key, 0) + 1
    return counts


def main():
    os_name, work, results, n, fb, fbf = sys.argv[1:7]
    work, results, n = pathlib.Path(work), pathlib.Path(results), int(n)
    fb, fbf = float(fb), float(fbf)
    floors = [float(x) for x in sys.argv[7].split()]
    jobs = [float(x) for x in sys.argv[8].split()]
    noop, rt, harden, login = map(float, sys.argv[9:13])
    ratios = [j / f for f, j in zip(floors, jobs)]
    floor_med = statistics.median(floors)

    pairs = []
    for i in range(n):
        report = json.loads((work / f"job{i}.json").read_text())["hosts"][0]
        pairs.append({
            "floor_ms": floors[i], "job_ms": jobs[i], "ratio": round(ratios[i], 3),
            "floor_apt_transactions": transactions((work / f"floor{i}.history").read_text()),
            "job_apt_transactions": transactions((work / f"job{i}.history").read_text()),
            "job_round_trips": report["round_trips"],
            "job_notes": report.get("notes", []),
            "job_outcome": report["outcome"],
        })
    fb_report = json.loads((work / "firstboot.json").read_text())["hosts"][0]
    lock_notes = [n for n in fb_report.get("notes", []) if "apt" in n]
    waited = []
    for note in lock_notes:
        if note.startswith("waited "):
            waited.append(note.split(" for ", 1)[0])  # "waited 2 min 5 s"
        elif note.startswith("stopped "):
            waited.append(f"took over {note.split()[1]} (lists only)")
    r = {
        "os": os_name,
        "method": (
            f"{n} pairs of fresh lab hosts, each pair booted together just before it runs; per pair the floor (one ssh: "
            "apt-get update, then apt-get upgrade with the job's packages and apt options) and "
            "`provision up` of the seeds/002 job with upgrade = \"full\" start at the same "
            "moment and run side by side on a 2-core machine shared with other engineers' "
            "builds (the load hits both alike); the ratio is the median of the pairs' ratios"
        ),
        "pairs": n,
        "floor_apt_ms_median": floor_med,
        "converge_ms_median": statistics.median(jobs),
        "converge_vs_floor": round(statistics.median(ratios), 3),
        "converge_vs_floor_each": [round(x, 3) for x in ratios],
        "job_apt_transactions": statistics.median(len(p["job_apt_transactions"]) for p in pairs),
        "floor_apt_transactions": statistics.median(len(p["floor_apt_transactions"]) for p in pairs),
        "first_boot_converge_ms": fb,
        "first_boot_floor_ms": fbf,
        "first_boot_vs_floor": round(fb / fbf, 3),
        "first_boot_lock_notes": lock_notes,
        "first_boot_waited": waited,
        "first_boot_outcome": fb_report["outcome"],
        "ssh_login_floor_ms": login, "noop_check_vs_login": round(noop / login, 3),
        "noop_check_ms_median": noop, "noop_round_trips": int(rt), "harden_check_ms_median": harden,
        "goals": {"converge_vs_floor": GOAL, "noop_check_ms": 500, "noop_round_trips": 3,
                  "harden_check_ms": 1000},
    }
    (results / f"converge-{os_name}.json").write_text(json.dumps(r, indent=2) + "\n")
    profile = {
        "os": os_name,
        "pairs": pairs,
        "job0_round_trips_seconds": round_trips((work / "job0.log").read_text()),
        "job0_service_events": restarts((work / "job0.journal").read_text()),
        "first_boot_apt_transactions": transactions((work / "firstboot.history").read_text()),
        "first_boot_round_trips_seconds": round_trips((work / "firstboot.log").read_text()),
    }
    (results / f"converge-{os_name}-profile.json").write_text(json.dumps(profile, indent=2) + "\n")
    print(f"== {os_name}  ({n} pairs, alternating)")
    print(f"fresh converge  {r['converge_ms_median']/1000:6.1f} s   floor (same apt work) "
          f"{floor_med/1000:6.1f} s   ratio {r['converge_vs_floor']:.2f}x median "
          f"({', '.join(f'{x:.2f}' for x in ratios)}) (goal <= {GOAL}x); apt transactions "
          f"job {r['job_apt_transactions']}, floor {r['floor_apt_transactions']}")
    print(f"first boot      {fb/1000:6.1f} s   floor {fbf/1000:6.1f} s   ratio {fb/fbf:.2f}x; locks: {lock_notes or 'none held'}")
    print(f"no-op check     {noop:6.0f} ms  round trips {int(rt)} (goals <= 500 ms, <= 3); bare ssh login {login:.0f} ms, ratio {noop/login:.2f}x")
    print(f"harden --check  {harden:6.0f} ms  (goal <= 1000 ms)")


if __name__ == "__main__":
    main()
