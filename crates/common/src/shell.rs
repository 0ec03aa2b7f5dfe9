//! Small helpers for generating POSIX shell.

/// Quote a string for POSIX sh (single quotes, embedded quotes escaped).
pub fn quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./:=@%+,".contains(&b))
    {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Shell function that writes a file atomically from the next `len` bytes of stdin.
///
/// `__provision_put PATH MODE OWNER[:GROUP] LEN`: temp file beside the target, exact length
/// check (a cut connection leaves no half-written file), fsync, backup of the old file as
/// `PATH.provision-bak`, rename over the target. A backup that cannot be written completely
/// (disk full) is removed, never left truncated: a rollback copies it over the target.
pub const PUT_FUNCTION: &str = r#"__provision_put() {
  __p=$1; __d=$(dirname "$__p")
  __t=$(mktemp "$__d/.provision-tmp.XXXXXX") || return 1
  head -c "$4" > "$__t" || { rm -f "$__t"; return 1; }
  __n=$(wc -c < "$__t")
  if [ "$__n" -ne "$4" ]; then rm -f "$__t"; echo "short write to $__p: $__n of $4 bytes" >&2; return 1; fi
  chmod "$2" "$__t" && chown "$3" "$__t" || { rm -f "$__t"; return 1; }
  sync "$__t" 2>/dev/null || sync
  if [ -f "$__p" ]; then cp -p "$__p" "$__p.provision-bak" || { rm -f "$__t" "$__p.provision-bak"; return 1; }; fi
  mv -f "$__t" "$__p" || { rm -f "$__t"; return 1; }
}"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_only_when_needed() {
        assert_eq!(quote("/etc/ssh/sshd_config"), "/etc/ssh/sshd_config");
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("it's"), r"'it'\''s'");
        assert_eq!(quote(""), "''");
        assert_eq!(quote("$(reboot)"), "'$(reboot)'");
    }
}
