#!/usr/bin/env python3
"""Generate the hostile-inventory corpus (crates/jobs/tests/hostile/; run: python3 hostile-gen.py): each case is an inventory with one hostile value;
⟪ marks where the error must point. Writes NNN-name.toml with a header:
# expect: LINE:COL FIELD
# rule: SUBSTRING
"""
import os, sys, json

out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "hostile")
HOST = '[hosts.web-1]\naddress = "10.0.0.1"\n'
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA ops@example"

def s(v):
    return json.dumps(v, ensure_ascii=False)

cases = []
def case(name, body, field, rule, cls):
    cases.append((name, body, field, rule, cls))

def var(name, key, value, rule, cls, table="vars", field=None, raw=False):
    """`[table]\nkey = value` with the value marked (a certs table also names a domain, so
    that the certificate checks reach the field)."""
    v = value if raw else s(value)
    sect, _, leaf = key.rpartition(".")
    header = f"[{table}.{sect}]" if sect else f"[{table}]"
    f = field or f"{table}.{key}"
    extra = 'domains = ["x.com"]\n' if sect == "certs" else ""
    case(name, f"{header}\n{leaf} = ⟪{v}\n{extra}\n{HOST}", f, rule, cls)

def arr(name, key, values, bad_index, rule, cls, table="vars", field=None):
    sect, _, leaf = key.rpartition(".")
    header = f"[{table}.{sect}]" if sect else f"[{table}]"
    items = [("⟪" if i == bad_index else "") + s(v) for i, v in enumerate(values)]
    f = field or f"{table}.{key}[{bad_index}]"
    case(name, f"{header}\n{leaf} = [{', '.join(items)}]\n\n{HOST}", f, rule, cls)

# 1. Packages (code execution: apt-get options; Debian policy).
for i, p in enumerate([
    "-oDPkg::Pre-Invoke::=touch /tmp/pwned", "--allow-unauthenticated", "-y", "-o", "curl;id",
    "curl $(id)", "`id`", "curl\nid", "Curl", "a", "", "curl wget", "../x", "curl&&id", "curl|id",
    "curl>x", "%s", "x'y", "curl\u0000", "-",
]):
    arr(f"package-{i:02}", "packages", ["curl", p], 1, "not a Debian package name", "package name / apt-get option")

# 2. Deploy user (sudoers, useradd options, root).
for i, n in enumerate([
    "%sudo", "%admin", "-oops", "--badname", "Root", "a b", "a:b", "#0", "+netgroup", "a\nb",
    "$(id)", "ALL", "deploy,root", "", "a" * 33, "1abc", "%s", "deploy ALL=(ALL) NOPASSWD:ALL",
]):
    var(f"deploy-user-{i:02}", "deploy_user.name", n, "not a user or group name", "user name / sudoers / useradd option")
var("deploy-user-root", "deploy_user.name", "root", "cannot be `root`", "deploy user root")
var("deploy-user-root-host", "deploy_user.name", "root", "cannot be `root`", "deploy user root", table="hosts.web-1.vars")

# 3. Other user and group names.
for i, (k, v) in enumerate([
    ("app.owner", "-oops"), ("app.owner", "%sudo"), ("app.group", "a b"), ("app.group", "$(id)"),
]):
    var(f"owner-{i:02}", k, v, "not a user or group name", "user name")
for i, (k, v) in enumerate([("owner", "-oops"), ("group", "%sudo"), ("owner", "root:root"), ("group", "a\nb")]):
    case(f"file-{k}-{i:02}",
         f'[[vars.files]]\npath = "/etc/x"\ncontent = "x"\n{k} = ⟪{s(v)}\n\n{HOST}',
         f"vars.files[0].{k}", "not a user or group name", "user name")

# 4. Host names (RFC 1123).
for i, h in enumerate([
    "bad_host!name$(id)", "-x", "x-", "a..b", "a" * 64, "host name", "h;id", "", "a\nb",
    ".".join(["a" * 60] * 5), "-oProxyCommand=id",
]):
    var(f"hostname-{i:02}", "hostname", h, "not a host name", "host name")

# 5. Domain names (LDH, 63/253, wildcard first, IDNA).
for i, d in enumerate([
    "x.com; include /etc/passwd; #", "a.*.com", "bücher.example", "-a.com", "a.com.", "a b.com",
    "x.com\n", "*", "**.x.com", "x..com", ("a" * 64) + ".com", ".".join(["a" * 60] * 5),
    "$(id).com", "x.com{", "x.com;", "a-.com",
]):
    var(f"domain-{i:02}", "app.domain", d, "not a domain name", "domain name")
for i, d in enumerate(["x.com;return 200", "*.*.x.com", "_x.com"]):
    arr(f"alias-{i:02}", "app.aliases", ["www.x.com", d], 1, "not a domain name", "domain name")

# 6. Absolute, normalised paths.
paths = ["relative/x", "/opt/../etc", "/opt//x", "/opt/x/", "/opt/x\n", "/opt/./x", "~/x", "", "/opt/x\u0007", ".."]
for i, p in enumerate(paths):
    var(f"app-path-{i:02}", "app.path", p, "path", "absolute path")
for i, (k, p) in enumerate([
    ("deploy_user.home", "home/deploy"), ("deploy_user.home", "/home/../root"),
    ("deploy_user.shell", "bash"), ("deploy_user.shell", "/bin/bash\n-c id"),
    ("certs.webroot", "var/www"), ("certs.ssl_dir", "/opt/x/../../etc"),
]):
    var(f"path-{i:02}", k, p, "path", "absolute path")
for i, p in enumerate(["etc/x", "/etc/../shadow", "/etc/x/", "/etc/\nx"]):
    case(f"file-path-{i:02}", f'[[vars.files]]\npath = ⟪{s(p)}\ncontent = "x"\n\n{HOST}',
         "vars.files[0].path", "path", "absolute path")

# 7. Ports.
for i, (k, v) in enumerate([("hardening.ssh_port", 0), ("certs.http_port", 0)]):
    var(f"port-zero-{i:02}", k, v, "port 0", "port", raw=True)
for i, (k, v) in enumerate([("hardening.ssh_port", 70000), ("hardening.ssh_port", -1), ("hardening.ssh_port", '"22"')]):
    var(f"port-type-{i:02}", k, v, "", "port", raw=True)
arr("port-allow", "hardening.allow_ports", [8080, 0], 1, "port 0", "port")
case("port-defaults", f"[defaults]\nport = ⟪0\n\n{HOST}", "defaults.port", "port 0", "port")
case("port-host", '[hosts.web-1]\naddress = "10.0.0.1"\nport = ⟪0\n', "hosts.web-1.port", "port 0", "port")
case("port-host-big", '[hosts.web-1]\naddress = "10.0.0.1"\nport = ⟪65536\n', "hosts.web-1.port", "", "port")

# 8. IP addresses and networks.
for i, ip in enumerate(["not-an-ip", "10.0.0.0/33", "1.2.3.4/", "x/8", "10.0.0.1; id", "::g", "256.1.1.1", "", "10.0.0.1 10.0.0.2", "-I"]):
    arr(f"ignore-ip-{i:02}", "hardening.fail2ban_ignore_ips", ["10.0.0.0/8", ip], 1, "not an IP address", "ip address / network")

# 9. Sizes.
for i, v in enumerate(["ten megs", "10mb", "0", "m", "-1m", "10 m", "$(id)", "", "10m\n"]):
    var(f"size-{i:02}", "docker.log_max_size", v, "not a size", "size")

# 10. systemd calendar expressions.
for i, v in enumerate([
    "every tuesday at noon", "", "*-*-* 25:00:00", "*-13-01", "*-*-* 02:00:00\nOnCalendar=minutely",
    "daily; rm -rf /", "%h", "*:0/0", "Funday 02:00", "*-*-* 02:00:00 $(id)", "02:00 02:00",
]):
    var(f"calendar-{i:02}", "app.backup.schedule", v, "not a systemd calendar expression", "calendar expression")
for i, v in enumerate(["twice a day", "*-*-* 03,15:00:00\nExecStart=/bin/sh"]):
    var(f"certs-calendar-{i:02}", "certs.schedule", v, "not a systemd calendar expression", "calendar expression")

# 11. SSH public keys.
for i, k in enumerate([
    KEY + "\nssh-ed25519 AAAA evil", "ssh-ed25519 not*base64", "ssh-dss AAAAB3NzaC1kc3M=",
    "ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    'command="id" ' + KEY, "ssh-ed25519", "", "AAAAC3NzaC1lZDI1NTE5", "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAAA x",
]):
    arr(f"ssh-key-{i:02}", "deploy_user.authorized_keys", [KEY, k], 1, "key", "ssh public key")

# 12. E-mail addresses.
for i, e in enumerate(["ops", "@x.com", "a b@x.com", "a@x.com\nb", "a@localhost", "a@@x.com"]):
    var(f"email-{i:02}", "certs.email", e, "not an e-mail address", "e-mail address")
var("email-app-only", "certs.email", "ops@x.com\nBcc: a@x.com", "not an e-mail address", "e-mail address")

# 13. Time zones (names; the host's zoneinfo is checked at plan time).
for i, z in enumerate(["../../etc/passwd", "Asia/../x", "/etc/passwd", "a b", "$(id)", "", "Asia/Shanghai;id", "-x", "Asia//Shanghai", "Asia/Shanghai\n"]):
    var(f"timezone-{i:02}", "timezone", z, "not a time zone name", "time zone")
var("timezone-group", "timezone", "../x", "not a time zone name", "time zone", table="groups.prod.vars")

# 14. Numbers: ranges, and no panics on numbers TOML or the vars cannot hold.
for i, (k, v, rule) in enumerate([
    ("nofile", "0", "out of range"), ("nofile", "1023", "out of range"), ("nofile", "9223372036854775807", "out of range"),
    ("nofile", "18446744073709551615", ""), ("nofile", "99999999999999999999999", ""), ("nofile", "-1", ""),
    ("minimum.memory_mib", "9223372036854775807", "out of range"), ("minimum.disk_free_mib", "18446744073709551615", ""),
    ("minimum.cpus", "0", "out of range"), ("docker.log_max_file", "0", "out of range"),
    ("app.backup.retention_days", "0", "out of range"), ("certs.dns_propagation_seconds", "9223372036854775807", "out of range"),
    ("nofile", "1e9", ""), ("nofile", '"65536"', ""),
]):
    var(f"number-{i:02}", k, v, rule, "number range / overflow", raw=True)
case("connect-timeout-defaults", f"[defaults]\nconnect_timeout = ⟪0\n\n{HOST}", "defaults.connect_timeout", "out of range", "number range / overflow")
case("connect-timeout-host", '[hosts.web-1]\naddress = "10.0.0.1"\nconnect_timeout = ⟪0\n', "hosts.web-1.connect_timeout", "out of range", "number range / overflow")
case("connect-timeout-huge", '[hosts.web-1]\naddress = "10.0.0.1"\nconnect_timeout = ⟪9223372036854775807\n', "hosts.web-1.connect_timeout", "out of range", "number range / overflow")

# 15. Host addresses and ssh options (code execution on the controller).
for i, a in enumerate(["-oProxyCommand=touch /tmp/pwned", "-F/dev/null", "a b", "", "host;id", "$(id)", "10.0.0.1\n-oProxyCommand=id", "`id`"]):
    case(f"address-{i:02}", f'[hosts.web-1]\naddress = ⟪{s(a)}\n', "hosts.web-1.address", "not an address", "address / ssh option")
case("address-from-name", '[hosts.⟪"-oProxyCommand=id"]\n', "-", "invalid name", "address / ssh option")
case("address-from-name-2", '[hosts.⟪-x]\n', "hosts.-x", "not an address", "address / ssh option")
for i, u in enumerate(["-oProxyCommand=id", "a b", "root;id"]):
    case(f"login-user-{i:02}", f'[defaults]\nuser = ⟪{s(u)}\n\n{HOST}', "defaults.user", "not a user or group name", "user name")
IDNL = s("/root/.ssh/id\nx")
case("identity-file-newline", f'[defaults]\nidentity_file = ⟪{IDNL}\n\n{HOST}', "defaults.identity_file", "control character", "path")

# 16. App names, templates, env, settings.
for i, (k, v) in enumerate([("app.name", "../x"), ("app.name", "a b"), ("app.name", "x;id"), ("app.name", ""), ("app.template", "../../etc"), ("app.name", "-x")]):
    var(f"app-name-{i:02}", k, v, "is not a name", "name")
case("env-key", f'[vars.app.env]\n"A-B" = ⟪"x"\n\n{HOST}', "vars.app.env.A-B", "environment variable name", "env")
case("env-key-digit", f'[vars.app.env]\n1A = ⟪"x"\n\n{HOST}', "vars.app.env.1A", "environment variable name", "env")
ENVNL = s("x\nB=y")
case("env-value-newline", f'[vars.app.env]\nA = ⟪{ENVNL}\n\n{HOST}', "vars.app.env.A", "one line", "env")
SETNL = s("x;\n}\nserver {")
case("settings-newline", f'[vars.app.settings]\nupstream = ⟪{SETNL}\n\n{HOST}', "vars.app.settings.upstream", "one line", "template setting")

# 17. File modes.
for i, m in enumerate(["999", "rwx", "0o644", "", "64"]):
    case(f"file-mode-{i:02}", f'[[vars.files]]\npath = "/etc/x"\ncontent = "x"\nmode = ⟪{s(m)}\n\n{HOST}', "vars.files[0].mode", "not a file mode", "file mode")

# 18. Certificate settings (the same rules as `certs …`).
for i, (k, v, rule) in enumerate([
    # challenge, key_type and ca are typed (enums, a URL): serde refuses them at the value,
    # and the loader names the field written there.
    ("certs.challenge", "http-02", "unknown variant"), ("certs.key_type", "rsa-1024", "unknown variant"),
    ("certs.ca", "ftp://x", "not an https:// URL"),
    ("certs.dns_api_url", "x", "not an https:// URL"), ("certs.dns_api_token_env", "A-B", "environment variable name"),
    ("certs.profile", "a b", ""),
]):
    var(f"certs-{i:02}", k, v, rule, "certificate settings", field=(k if k == "certs.profile" else f"vars.{k}"))
for i, d in enumerate(["*.*.x.com", "10.0.0.1", "localhost", "x.com;id"]):
    arr(f"certs-domain-{i:02}", "certs.domains", ["x.com", d], 1, "", "certificate settings", field="certs.domains[1]")

# 19. Unknown fields and wrong types stay located errors.
case("unknown-field", f"[vars]\n⟪timezon = \"Etc/UTC\"\n\n{HOST}", "-", "unknown field", "unknown field / type")
case("wrong-type", f"[vars]\npackages = ⟪\"curl\"\n\n{HOST}", "vars.packages", "", "unknown field / type")
case("unknown-connection-field", f"[defaults]\n⟪proxy_command = \"id\"\n\n{HOST}", "-", "unknown field", "unknown field / type")

case("known-hosts-space", f'[defaults]\nknown_hosts = ⟪"/root/my hosts"\n\n{HOST}', "defaults.known_hosts", "contains a space", "path")

# 20. App settings reach nginx and compose files only as single words; the app's own
# fields are checked by the same load.
APP = '[vars.app]\nname = "x"\ntemplate = "ai-meeting"\n\n'
for i, (k, v) in enumerate([
    ("client_max_body_size", "1M; include /etc/passwd"), ("client_max_body_size", "1M}\nserver {"),
    ("api_image", "x $(id)"), ("api_image", "x\nprivileged: true"), ("nginx_image", "nginx:alpine\"; touch /tmp/x"),
    ("worker_connections", "1; user root"), ("postgres_image", "-oops"), ("api_memory", "${HOME}"),
]):
    if "\n" in v:
        case(f"app-setting-{i:02}", f"{APP}[vars.app.settings]\n{k} = ⟪{s(v)}\n\n{HOST}",
             f"vars.app.settings.{k}", "one line", "template setting")
    else:
        case(f"app-setting-{i:02}", f"{APP}[vars.app.⟪settings]\n{k} = {s(v)}\n\n{HOST}",
             "app.settings", "cannot be written into a config file", "template setting")
case("app-template-unknown", f'[vars.app]\nname = "x"\ntemplate = ⟪"nope"\n\n{HOST}', "app.template", "not a built-in template set", "name")

# 20. DNS-01 providers that sign their requests: the provider is a closed set; the key
# pair's file is absolute, readable, and must exist before anything connects.
DNS = '[vars.certs]\ndomains = ["*.x.com"]\nchallenge = "dns-01"\n'
case("dns-provider-unknown", f'{DNS}dns_provider = ⟪"route53"\n\n{HOST}', "vars.certs.dns_provider", "unknown variant", "certificate settings")
case("dns-credentials-file-relative", f'{DNS}dns_provider = "alidns"\ndns_credentials_file = ⟪"keys.env"\n\n{HOST}',
     "vars.certs.dns_credentials_file", "absolute", "certificate settings")
case("dns-credentials-file-missing", f'{DNS}dns_provider = "dnspod"\ndns_credentials_file = ⟪"/nonexistent/provision-test/dns.env"\n\n{HOST}',
     "certs.dns_credentials_file", "cannot read it", "certificate settings")

# 21. Vault commands of `.env` values: argv whose program is named.
case("env-command-empty", f'{APP}[vars.app.env_commands]\nSMTP_PASSWORD = ⟪[]\n\n{HOST}',
     "vars.app.env_commands.SMTP_PASSWORD", "the command is empty", "vault command")
case("env-command-program-empty", f'{APP}[vars.app.env_commands]\nSMTP_PASSWORD = [⟪" ", "show", "smtp"]\n\n{HOST}',
     "vars.app.env_commands.SMTP_PASSWORD[0]", "the program name is empty", "vault command")
case("env-command-program-option", f'{APP}[vars.app.env_commands]\nSMTP_PASSWORD = [⟪"--help"]\n\n{HOST}',
     "vars.app.env_commands.SMTP_PASSWORD[0]", "the first word is the program", "vault command")
case("env-command-and-env", f'{APP}[vars.app.env]\nSMTP_PASSWORD = "x"\n[vars.app.env_commands]\nSMTP_PASSWORD = ⟪["pass", "show", "smtp"]\n\n{HOST}',
     "vars.app.env_commands.SMTP_PASSWORD", "also set in app.env", "vault command")

# 22. Mirrors (issue 15): URLs that are http(s) hosts and paths, keys that parse.
for i, u in enumerate([
    "ftp://mirror.example.cn/ubuntu", "file:/srv/mirror", "mirrors.example.cn/ubuntu",
    "https://mirror.example.cn/ubuntu noble main", "https://mirror.example.cn/ubuntu\nSuites: x",
    "https://user:pw@mirror.example.cn/ubuntu", "https://mirror.example.cn/[trusted=yes]",
    "https://mirror.example.cn/'$(id)'", "https://mirror.example.cn:0/ubuntu", "-ohttp://x",
]):
    var(f"apt-mirror-{i:02}", "apt.mirror", u, "", "mirror URL")
var("apt-security-mirror", "apt.security_mirror", "javascript:alert(1)", "not a URL", "mirror URL")
var("docker-repository-url", "docker.repository.url", "gopher://mirror.example.cn/docker-ce", "not http or https", "mirror URL")
var("docker-repository-key-url", "docker.repository.key_url", "https://mirror.example.cn/gpg?x=1", "query", "mirror URL")
arr("docker-registry-mirror", "docker.registry_mirrors", ["https://registry.example.cn", "registry.example.cn"], 1, "not a URL", "mirror URL")
KEY_OK = open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../common/tests/fixtures/test-repo-key.asc")).read()
for i, (k, rule) in enumerate([
    ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA", "starts with"),
    (KEY_OK.replace("PUBLIC KEY BLOCK", "PRIVATE KEY BLOCK"), "PRIVATE key"),
    (KEY_OK.replace("-----END PGP PUBLIC KEY BLOCK-----\n", ""), "does not end"),
    (KEY_OK.replace("mDME", "mDM*", 1), "not base64"),
    (KEY_OK.replace("mDME", "mDMF", 1), "checksum"),
    ("-----BEGIN PGP PUBLIC KEY BLOCK-----\n\naGVsbG8sIHRoaXMgaXMgbm90IGEga2V5\n-----END PGP PUBLIC KEY BLOCK-----\n", "not OpenPGP packets"),
]):
    var(f"docker-repository-key-{i:02}", "docker.repository.key", k, rule, "signing key")
case("docker-repository-key-and-url", f'[vars.docker.repository]\nkey_url = "https://mirror.example.cn/gpg"\nkey = ⟪{s(KEY_OK)}\n\n{HOST}',
     "vars.docker.repository.key", "not both", "signing key")

# 21. certs.ca is a preset or a directory URL, parsed when the vars load.
var("certs-ca-preset", "certs.ca", "zerossl", "neither a preset", "certificate settings")
var("certs-ca-plain-http", "certs.ca", "http://acme.example.com/dir", "plain HTTP", "certificate settings")

os.makedirs(out, exist_ok=True)
for f in os.listdir(out):
    os.remove(os.path.join(out, f))
classes = {}
for n, (name, body, field, rule, cls) in enumerate(cases, 1):
    header_lines = 3
    i = body.index("⟪")
    before = body[:i]
    line = before.count("\n") + 1 + header_lines
    col = len(before) - (before.rfind("\n") + 1) + 1
    text = body.replace("⟪", "", 1)
    header = f"# class: {cls}\n# expect: {line}:{col} {field}\n# rule: {rule}\n"
    with open(os.path.join(out, f"{n:03}-{name}.toml"), "w") as fh:
        fh.write(header + text)
    classes[cls] = classes.get(cls, 0) + 1
print(len(cases), "cases")
for c, k in sorted(classes.items()):
    print(f"  {k:3} {c}")
