//! The inventory file `provision lab up` writes.

use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::path::Path;

use crate::os::Os;

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

/// One host of the inventory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// `labN`.
    pub name: String,
    /// 10.77.N.2.
    pub address: Ipv4Addr,
    /// The login the lab key works for.
    pub user: String,
    /// Its OS.
    pub os: Os,
}

/// Render the inventory for `hosts`, in the given order: group `lab` holds
/// every host, and one group per release code name (`noble`, `bookworm`, ...)
/// the hosts of that OS, so `--limit noble` picks them.
pub fn render(identity_file: &Path, known_hosts: &Path, hosts: &[Entry]) -> String {
    let mut out = String::new();
    out.push_str("# Written by `provision lab up`; removed by `provision lab down`.\n");
    out.push_str("[defaults]\n");
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
    let names = |hosts: &mut dyn Iterator<Item = &Entry>| -> String {
        hosts
            .map(|h| toml_str(&h.name))
            .collect::<Vec<_>>()
            .join(", ")
    };
    out.push_str("\n[groups.lab]\n");
    let _ = writeln!(out, "hosts = [{}]", names(&mut hosts.iter()));
    for os in Os::ALL {
        if hosts.iter().any(|h| h.os == os) {
            let _ = writeln!(
                out,
                "\n[groups.{}]  # {os}\nhosts = [{}]",
                os.suite(),
                names(&mut hosts.iter().filter(|h| h.os == os))
            );
        }
    }
    for h in hosts {
        let _ = writeln!(
            out,
            "\n[hosts.{}]  # {}\naddress = {}\nuser = {}",
            h.name,
            h.os,
            toml_str(&h.address.to_string()),
            toml_str(&h.user)
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
            Path::new("/var/lib/provision-lab/id_ed25519"),
            Path::new("/var/lib/provision-lab/known_hosts"),
            &[
                Entry {
                    name: "lab1".into(),
                    address: Ipv4Addr::new(10, 77, 1, 2),
                    user: "ubuntu".into(),
                    os: Os::Ubuntu2404,
                },
                Entry {
                    name: "lab2".into(),
                    address: Ipv4Addr::new(10, 77, 2, 2),
                    user: "root".into(),
                    os: Os::Debian12,
                },
            ],
        );
        let expected = r#"# Written by `provision lab up`; removed by `provision lab down`.
[defaults]
identity_file = "/var/lib/provision-lab/id_ed25519"
known_hosts = "/var/lib/provision-lab/known_hosts"

[groups.lab]
hosts = ["lab1", "lab2"]

[groups.noble]  # ubuntu-24.04
hosts = ["lab1"]

[groups.bookworm]  # debian-12
hosts = ["lab2"]

[hosts.lab1]  # ubuntu-24.04
address = "10.77.1.2"
user = "ubuntu"

[hosts.lab2]  # debian-12
address = "10.77.2.2"
user = "root"
"#;
        assert_eq!(text, expected);
    }

    #[test]
    fn empty_and_escaping() {
        let text = render(Path::new("/tmp/a \"b\"\\c"), Path::new("/kh"), &[]);
        assert!(text.contains("identity_file = \"/tmp/a \\\"b\\\"\\\\c\"\n"));
        assert!(text.ends_with("[groups.lab]\nhosts = []\n"));
    }
}
