use super::*;

const GOOD: &str = r#"
[defaults]
user = "root"
identity_file = "keys/id_ed25519"

[vars]
timezone = "Etc/UTC"
packages = ["curl", "git"]

[vars.hardening]
allow_ports = [8080]

[groups.prod]
hosts = ["web1"]
[groups.prod.vars]
timezone = "Asia/Shanghai"

[groups.web]
[groups.web.vars.hardening]
fail2ban = true

[hosts.web1]
address = "203.0.113.10"
groups = ["web"]

[hosts.web2]
address = "203.0.113.11"
user = "deploy"
port = 2222
[hosts.web2.vars]
packages = ["htop"]
"#;

fn parse(text: &str) -> Result<Inventory, Box<InventoryError>> {
    Inventory::parse("inv.toml", text, Some(Path::new("/etc/provision")))
}

#[test]
fn precedence_host_over_group_over_defaults() {
    let inv = parse(GOOD).unwrap();
    let web1 = &inv.hosts[0];
    assert_eq!(web1.name, "web1");
    assert_eq!(web1.groups, ["prod", "web"]);
    assert_eq!(
        web1.vars.timezone.as_deref(),
        Some("Asia/Shanghai"),
        "group beats defaults"
    );
    let h = web1.vars.hardening.as_ref().unwrap();
    assert_eq!(
        h.allow_ports.as_deref(),
        Some(&[8080][..]),
        "tables merge key by key"
    );
    assert_eq!(h.fail2ban, Some(true));
    assert_eq!(
        web1.connection.identity_file.as_deref(),
        Some(Path::new("/etc/provision/keys/id_ed25519")),
        "relative paths resolve against the inventory's directory"
    );
    let web2 = &inv.hosts[1];
    assert_eq!(web2.vars.timezone.as_deref(), Some("Etc/UTC"));
    assert_eq!(
        web2.vars.packages.as_deref(),
        Some(&["htop".to_string()][..]),
        "host replaces arrays"
    );
    assert_eq!(
        (web2.connection.user.as_deref(), web2.connection.port),
        (Some("deploy"), Some(2222))
    );
}

#[test]
fn limit_by_host_and_group() {
    let inv = parse(GOOD).unwrap();
    let names = |l| {
        inv.select(Some(l))
            .unwrap()
            .iter()
            .map(|h| h.name.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(names("prod"), ["web1"]);
    assert_eq!(names("web2,prod"), ["web1", "web2"]);
    assert_eq!(inv.select(None).unwrap().len(), 2);
    assert!(
        inv.select(Some("nope"))
            .unwrap_err()
            .contains("`nope` is neither a host nor a group")
    );
}

/// Each malformed input, the line and column it must point at, and words the message must
/// contain (the field and what is wrong).
const BAD: &[(&str, &str, usize, usize, &[&str])] = &[
    (
        "unknown top-level key",
        "[hostz.a]\naddress = \"x\"\n",
        1,
        2,
        &["unknown field `hostz`"],
    ),
    (
        "unknown host key",
        "[hosts.a]\nadress = \"x\"\n",
        2,
        1,
        &["unknown field `adress`", "address"],
    ),
    (
        "port not a number",
        "[hosts.a]\nport = \"22\"\n",
        2,
        8,
        &["invalid type", "u16"],
    ),
    (
        "port out of range",
        "[hosts.a]\nport = 70000\n",
        2,
        8,
        &["70000"],
    ),
    (
        "unknown var",
        "[vars]\ntimezon = \"UTC\"\n",
        2,
        1,
        &["unknown field `timezon`", "timezone"],
    ),
    (
        "wrong var type",
        "[vars]\npackages = \"curl\"\n",
        2,
        12,
        &["invalid type", "sequence"],
    ),
    (
        "unknown nested var",
        "[vars.hardening]\nallow_port = [1]\n",
        2,
        1,
        &["unknown field `allow_port`"],
    ),
    (
        "bad enum value",
        "[vars]\nupgrade = \"sometimes\"\n",
        2,
        11,
        &["unknown variant `sometimes`", "security"],
    ),
    (
        "bad reboot policy",
        "[vars]\nreboot = \"always\"\n",
        2,
        10,
        &["unknown variant `always`", "if-required"],
    ),
    (
        "bad reboot window",
        "[vars]\nreboot_window = \"2am-4am\"\n",
        2,
        17,
        &["reboot_window", "is not a time window: `HH:MM-HH:MM`"],
    ),
    (
        "group lists unknown host",
        "[groups.g]\nhosts = [\"ghost\"]\n",
        2,
        10,
        &["unknown host `ghost`"],
    ),
    (
        "host in unknown group",
        "[hosts.a]\ngroups = [\"nope\"]\n",
        2,
        11,
        &["unknown group `nope`"],
    ),
    (
        "name both group and host",
        "[groups.a]\n[hosts.a]\n",
        1,
        9,
        &["both a group and a host"],
    ),
    (
        "invalid host name",
        "[hosts.\"a b\"]\n",
        1,
        8,
        &["invalid name `a b`"],
    ),
    (
        "toml syntax error",
        "[hosts.a]\naddress = \n",
        2,
        11,
        &["string"],
    ),
    (
        "duplicate key",
        "[hosts.a]\naddress = \"x\"\naddress = \"y\"\n",
        3,
        1,
        &["duplicate key"],
    ),
    (
        "groups disagree",
        "[groups.a]\nhosts=[\"h\"]\nvars={timezone=\"UTC\"}\n[groups.b]\nhosts=[\"h\"]\nvars={timezone=\"Asia/Tokyo\"}\n[hosts.h]\n",
        7,
        8,
        &["`timezone` is set differently by groups `a` and `b`"],
    ),
    (
        "unknown connection default",
        "[defaults]\nusr = \"root\"\n",
        2,
        1,
        &["unknown field `usr`"],
    ),
    (
        "file var missing content",
        "[vars]\nfiles = [{ path = \"/etc/motd\" }]\n",
        2,
        10,
        &["missing field `content`"],
    ),
    (
        "unknown file var key",
        "[vars]\nfiles = [{ path = \"/x\", content = \"\", mod = \"0644\" }]\n",
        2,
        39,
        &["unknown field `mod`"],
    ),
    (
        "nofile negative",
        "[vars]\nnofile = -1\n",
        2,
        10,
        &["invalid value", "-1"],
    ),
    (
        "nofile as float",
        "[vars]\nnofile = 65536.0\n",
        2,
        10,
        &["invalid type", "floating point"],
    ),
    (
        "packages with a number",
        "[vars]\npackages = [\"curl\", 7]\n",
        2,
        21,
        &["invalid type", "integer `7`"],
    ),
    (
        "deploy user unknown key",
        "[vars.deploy_user]\nkeys = []\n",
        2,
        1,
        &["unknown field `keys`", "authorized_keys"],
    ),
    (
        "deploy user sudo not bool",
        "[vars.deploy_user]\nsudo = \"yes\"\n",
        2,
        8,
        &["invalid type", "boolean"],
    ),
    (
        "minimum cpus string",
        "[vars.minimum]\ncpus = \"4\"\n",
        2,
        8,
        &["invalid type", "u32"],
    ),
    (
        "allow_ports out of range",
        "[vars.hardening]\nallow_ports = [80, 99999]\n",
        2,
        20,
        &["99999"],
    ),
    (
        "ssh_rate_limit not bool",
        "[vars.hardening]\nssh_rate_limit = \"off\"\n",
        2,
        18,
        &["invalid type", "boolean"],
    ),
    (
        "unknown docker key",
        "[vars.docker]\nversion = \"27\"\n",
        2,
        1,
        &["unknown field `version`"],
    ),
    (
        "unknown app key",
        "[vars.app]\nnmae = \"x\"\n",
        2,
        1,
        &["unknown field `nmae`"],
    ),
    (
        "unknown certs key",
        "[vars.certs]\ndomain = \"x\"\n",
        2,
        1,
        &["unknown field `domain`", "domains"],
    ),
    (
        "hosts is not a table",
        "hosts = [\"a\"]\n",
        1,
        9,
        &["invalid type", "map"],
    ),
    (
        "group hosts not an array",
        "[groups.g]\nhosts = \"a\"\n",
        2,
        9,
        &["invalid type", "sequence"],
    ),
    (
        "unknown group key",
        "[groups.g]\nmembers = []\n",
        2,
        1,
        &["unknown field `members`"],
    ),
    (
        "host groups not an array",
        "[hosts.a]\ngroups = \"web\"\n",
        2,
        10,
        &["invalid type", "sequence"],
    ),
    (
        "connect_timeout negative",
        "[defaults]\nconnect_timeout = -5\n",
        2,
        19,
        &["invalid value"],
    ),
    (
        "unterminated string",
        "[hosts.a]\naddress = \"10.0.0.1\n",
        2,
        20,
        &["invalid basic string"],
    ),
    (
        "unclosed table header",
        "[hosts.a\naddress = \"x\"\n",
        1,
        9,
        &["expected"],
    ),
    (
        "invalid group name",
        "[groups.\"web servers\"]\n",
        1,
        9,
        &["invalid name `web servers`"],
    ),
];

#[test]
fn malformed_inventories_name_file_line_column_and_field() {
    assert!(BAD.len() >= 30);
    let mut failures = Vec::new();
    for (what, text, line, column, needles) in BAD {
        match parse(text) {
            Ok(_) => failures.push(format!("{what}: accepted")),
            Err(e) => {
                let shown = e.to_string();
                if (e.line, e.column) != (*line, *column)
                    || !needles.iter().all(|n| shown.contains(n))
                    || !shown.starts_with(&format!("inv.toml:{line}:{column}: "))
                {
                    failures.push(format!(
                        "{what}: expected {line}:{column} with {needles:?}, got {}:{}: {shown}",
                        e.line, e.column
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

/// `text` does not load: the error is at `inv.toml:LINE:COLUMN`, names `field` and says `says`.
fn assert_load_error(text: &str, (line, column): (usize, usize), field: &str, says: &str) {
    let e = parse(text).expect_err(text);
    assert_eq!(
        (e.line, e.column, e.field.as_deref()),
        (line, column, Some(field)),
        "{e}"
    );
    assert!(
        e.to_string()
            .starts_with(&format!("inv.toml:{line}:{column}: `{field}`: ")),
        "{e}"
    );
    assert!(e.message.contains(says), "{e}");
}

/// A value of the wrong type or outside its type (TOML and serde refuse it while the file
/// is read) still names the field written at the error's place; an unknown key names none.
#[test]
fn a_type_error_names_the_field_written_where_it_points() {
    assert_load_error(
        "[vars]\npackages = \"curl\"\n",
        (2, 12),
        "vars.packages",
        "expected a sequence",
    );
    assert_load_error(
        "[hosts.a]\nport = 65536\n",
        (2, 8),
        "hosts.a.port",
        "expected u16",
    );
    assert_load_error(
        "[groups.g.vars.certs]\nchallenge = \"tls-alpn-01\"\n",
        (2, 13),
        "groups.g.vars.certs.challenge",
        "unknown variant",
    );
    let unknown = parse("[vars]\ntimezon = \"Etc/UTC\"\n").unwrap_err();
    assert_eq!(
        (unknown.line, unknown.field.as_deref()),
        (2, None),
        "{unknown}"
    );
}

/// `certs.ca` is a preset or a directory URL, parsed when the vars load: a bad one is an
/// error at its file:line:column naming the field, in any layer; a good one is typed.
#[test]
fn a_bad_certs_ca_is_a_load_error_at_its_line_and_field() {
    for (text, line, column, field, says) in [
        (
            "[vars.certs]\nca = \"zerossl\"\n",
            2,
            6,
            "vars.certs.ca",
            "neither a preset",
        ),
        (
            "[hosts.a]\n[hosts.a.vars.certs]\ndomains = [\"a.example\"]\nca = \"http://acme.example.com/dir\"\n",
            4,
            6,
            "hosts.a.vars.certs.ca",
            "plain HTTP",
        ),
        (
            "[groups.g.vars]\ncerts = { ca = \"ftp://x\" }\n",
            2,
            16,
            "groups.g.vars.certs.ca",
            "not an https:// URL",
        ),
    ] {
        assert_load_error(text, (line, column), field, says);
    }
    let inventory = parse(
        "[vars.certs]\nca = \"letsencrypt-staging\"\n[hosts.a]\n[hosts.b.vars.certs]\nca = \"https://10.77.0.2:14000/dir\"\n",
    )
    .unwrap();
    let ca = |i: usize| inventory.hosts[i].vars.certs.as_ref().unwrap().ca.clone();
    assert_eq!(ca(0), Some(Ca::LetsEncryptStaging));
    assert_eq!(
        ca(1),
        Some(Ca::Custom(
            crate::values::ServiceUrl::parse("https://10.77.0.2:14000/dir").unwrap()
        ))
    );
}

/// `files[].mode` is typed when the vars load: a bad one is an error at its
/// file:line:column naming the field (planning never sees it); a good one is its bits.
#[test]
fn a_bad_file_mode_is_a_load_error_at_its_line_and_field() {
    for (text, line, column, field) in [
        (
            "[[vars.files]]\npath = \"/etc/a\"\ncontent = \"a\"\nmode = \"rw-r--r--\"\n",
            4,
            8,
            "vars.files[0].mode",
        ),
        (
            "[hosts.a.vars]\nfiles = [{ path = \"/etc/a\", content = \"a\" }, { path = \"/etc/b\", content = \"b\", mode = \"0o644\" }]\n",
            2,
            87,
            "hosts.a.vars.files[1].mode",
        ),
    ] {
        assert_load_error(text, (line, column), field, "not a file mode");
    }
    let inventory =
        parse("[[vars.files]]\npath = \"/etc/a\"\ncontent = \"a\"\nmode = \"0640\"\n[hosts.a]\n")
            .unwrap();
    let files = inventory.hosts[0].vars.files.as_ref().unwrap();
    assert_eq!(
        files[0].mode.map(crate::values::FileMode::bits),
        Some(0o640)
    );
}

#[test]
fn example_inventories_parse() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../inventories");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            Inventory::load(&path).unwrap_or_else(|e| panic!("{e}"));
            n += 1;
        }
    }
    assert!(n >= 1, "no inventories in {}", dir.display());
}

mod fuzz {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Arbitrary text never panics the parser; errors always carry a real location.
        #[test]
        fn arbitrary_text_never_panics(text in "\\PC{0,200}") {
            if let Err(e) = parse(&text) {
                prop_assert!(e.line >= 1 && e.column >= 1);
                prop_assert!(e.line <= text.lines().count().max(1) + 1);
            }
        }

        /// Mutations of a valid inventory (bytes cut, duplicated or replaced) never panic.
        #[test]
        fn mutated_inventory_never_panics(
            cut in 0usize..GOOD.len(),
            len in 0usize..40,
            insert in "[\\[\\]=\"{},.a-z0-9\n ]{0,12}",
        ) {
            let end = (cut + len).min(GOOD.len());
            let (mut a, mut b) = (cut, end);
            while !GOOD.is_char_boundary(a) { a -= 1; }
            while !GOOD.is_char_boundary(b) { b -= 1; }
            let text = format!("{}{}{}", &GOOD[..a], insert, &GOOD[b..]);
            let _ = parse(&text);
        }

        /// Issue 11: any string in any typed field either loads (and then follows the
        /// field's rule) or is refused at that field's line; any whole number, however big,
        /// is a located error or a value, never a panic.
        #[test]
        fn any_value_in_any_field_is_checked_never_panics(
            field in prop::sample::select(vec![
                ("vars", "timezone"), ("vars", "hostname"), ("vars.deploy_user", "name"),
                ("vars.app", "path"), ("vars.app", "domain"), ("vars.docker", "log_max_size"),
                ("vars.app.backup", "schedule"), ("hosts.web-1", "address"), ("defaults", "user"),
            ]),
            value in "\\PC{0,40}",
            number in any::<u64>(),
            numeric in prop::sample::select(vec![
                ("vars", "nofile"), ("vars.minimum", "memory_mib"), ("defaults", "connect_timeout"),
                ("vars.hardening", "ssh_port"), ("vars.certs", "dns_propagation_seconds"),
            ]),
        ) {
            let (table, key) = field;
            let host = if table == "hosts.web-1" { "" } else { "[hosts.web-1]\n" };
            let text = format!("[{table}]\n{key} = {}\n{host}", toml::Value::String(value.clone()));
            let checked = match (table, key) {
                ("vars", "timezone") => crate::values::timezone(&value),
                ("vars", "hostname") => crate::values::host_name(&value),
                ("vars.deploy_user", "name") => crate::values::deploy_user_name(&value),
                ("vars.app", "path") => crate::values::absolute_path(&value),
                ("vars.app", "domain") => crate::values::domain_name(&value),
                ("vars.docker", "log_max_size") => crate::values::size(&value),
                ("vars.app.backup", "schedule") => crate::values::calendar(&value),
                ("hosts.web-1", "address") => crate::values::address(&value),
                _ => crate::values::user_name(&value),
            };
            match parse(&text) {
                Ok(_) => prop_assert!(checked.is_ok(), "{text:?} loaded"),
                Err(e) => {
                    prop_assert!(checked.is_err(), "{text:?}: {e}");
                    prop_assert_eq!(e.line, 2, "{}", e);
                    prop_assert!(e.field.as_deref().is_some_and(|f| f.ends_with(key)), "{}", e);
                }
            }
            let (table, key) = numeric;
            let text = format!("[{table}]\n{key} = {number}\n[hosts.web-1]\n");
            if let Err(e) = parse(&text) {
                prop_assert_eq!(e.line, 2, "{}", e);
            }
        }
    }
}
