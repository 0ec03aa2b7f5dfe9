//! The inventory file `provision lab up` writes.

use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::path::Path;

/// A TOML basic string.
fn toml_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Render the inventory for `hosts` (name, address), in the given order.
pub fn render(
    user: &str,
    identity_file: &Path,
    known_hosts: &Path,
    hosts: &[(String, Ipv4Addr)],
) -> String {
    let mut out = String::new();
    out.push_str("# Written by `provision lab up`; removed by `provision lab down`.\n");
    out.push_str("[defaults]\n");
    let _ = writeln!(out, "user = {}", toml_str(user));
    let _ = writeln!(
        out,
        "identity_file = {}",
        toml_str(&identity_file.to_string_lossy())
    );
    let _ = writeln!(
        out,
        "known_hosts = {}",
        toml_str(&known_hosts.to_string_lossy())
    );
    out.push_str("\n[groups.lab]\n");
    let names: Vec<String> = hosts.iter().map(|(n, _)| toml_str(n)).collect();
    let _ = writeln!(out, "hosts = [{}]", names.join(", "));
    for (name, address) in hosts {
        let _ = writeln!(
            out,
            "\n[hosts.{name}]\naddress = {}",
            toml_str(&address.to_string())
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_exact_format() {
        let text = render(
            "root",
            Path::new("/var/lib/provision-lab/id_ed25519"),
            Path::new("/var/lib/provision-lab/known_hosts"),
            &[
                ("lab1".to_string(), Ipv4Addr::new(10, 77, 1, 2)),
                ("lab2".to_string(), Ipv4Addr::new(10, 77, 2, 2)),
            ],
        );
        let expected = r#"# Written by `provision lab up`; removed by `provision lab down`.
[defaults]
user = "root"
identity_file = "/var/lib/provision-lab/id_ed25519"
known_hosts = "/var/lib/provision-lab/known_hosts"

[groups.lab]
hosts = ["lab1", "lab2"]

[hosts.lab1]
address = "10.77.1.2"

[hosts.lab2]
address = "10.77.2.2"
"#;
        assert_eq!(text, expected);
    }

    #[test]
    fn empty_and_escaping() {
        let text = render("root", Path::new("/tmp/a \"b\"\\c"), Path::new("/kh"), &[]);
        assert!(text.contains("identity_file = \"/tmp/a \\\"b\\\"\\\\c\"\n"));
        assert!(text.ends_with("[groups.lab]\nhosts = []\n"));
    }
}
