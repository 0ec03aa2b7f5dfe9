//! An ASCII-armored OpenPGP public key (an apt repository's signing key), checked for its
//! structure: the armor (RFC 9580 §6.2: header line, optional armor headers, base64,
//! optional CRC-24, footer line) and the packets inside (each header's length adds up to
//! the data exactly; a public key packet first, then only packets a public key carries).
//! The signatures themselves are apt's to verify.

use base64::Engine as _;

const BEGIN: &str = "-----BEGIN PGP PUBLIC KEY BLOCK-----";
const END: &str = "-----END PGP PUBLIC KEY BLOCK-----";

/// Larger than any signing key with its certifications (Docker's is about 4 KiB).
const MAX_LEN: usize = 256 * 1024;

/// Packet tags a transferable public key holds (RFC 9580 §10.1): signature, public key,
/// trust, user ID, public subkey, user attribute, padding.
const KEY_PACKETS: &[u8] = &[2, 6, 12, 13, 14, 17, 21];

/// The rule for `docker.repository.key`: see the module docs.
pub(crate) fn openpgp_public_key(s: &str) -> Result<(), String> {
    if s.len() > MAX_LEN {
        return Err(format!(
            "the key is {} bytes; a signing key is at most {MAX_LEN}",
            s.len()
        ));
    }
    let text = s.trim();
    if text.contains("-----BEGIN PGP PRIVATE KEY BLOCK-----") {
        return Err("this is a PRIVATE key block: give the repository's public key, and keep the private key off the inventory".into());
    }
    let body = text
        .strip_prefix(BEGIN)
        .ok_or_else(|| format!("an armored OpenPGP public key starts with `{BEGIN}` (export it with `gpg --armor --export KEYID`)"))?;
    let body = body
        .strip_suffix(END)
        .ok_or_else(|| format!("the key does not end with `{END}`"))?;
    let mut lines = body.lines().map(|l| l.trim_end_matches('\r'));
    if lines.next().is_some_and(|l| !l.trim().is_empty()) {
        return Err(format!("`{BEGIN}` must be alone on its line"));
    }
    // Armor headers (`Comment: …`) up to the blank line; some exports have none.
    let mut data_lines = Vec::new();
    let mut in_headers = true;
    for line in lines {
        if in_headers {
            if line.trim().is_empty() {
                in_headers = false;
                continue;
            }
            if line.contains(": ") {
                continue;
            }
            in_headers = false;
        }
        if !line.trim().is_empty() {
            data_lines.push(line.trim());
        }
    }
    let (data_lines, crc) = match data_lines.last() {
        Some(l) if l.starts_with('=') && l.len() == 5 => {
            (&data_lines[..data_lines.len() - 1], Some(&l[1..]))
        }
        _ => (&data_lines[..], None),
    };
    let b64: String = data_lines.concat();
    if let Some(bad) = b64
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '=')))
    {
        return Err(format!(
            "the key's armored data contains {bad:?}, which is not base64"
        ));
    }
    let data = base64::engine::general_purpose::STANDARD
        .decode(&b64)
        .map_err(|e| format!("the key's armored data is not valid base64: {e}"))?;
    if let Some(crc) = crc {
        let want = base64::engine::general_purpose::STANDARD
            .decode(crc)
            .map_err(|_| "the key's checksum line (`=XXXX`) is not base64".to_string())?;
        let got = crc24(&data).to_be_bytes();
        if want != got[1..] {
            return Err(
                "the key's checksum (CRC-24) does not match its data: the key was altered or cut"
                    .into(),
            );
        }
    }
    packets(&data)
}

/// The key as a file holds it: each line without the indentation a TOML multi-line
/// string may add, one newline at the end.
pub fn armored_key_file(s: &str) -> String {
    let mut out: String = s
        .trim()
        .lines()
        .map(|l| format!("{}\n", l.trim()))
        .collect();
    if out.is_empty() {
        out.push('\n');
    }
    out
}

/// Walk the packets: known headers, lengths that tile the data, a public key first.
fn packets(data: &[u8]) -> Result<(), String> {
    if data.is_empty() {
        return Err("the key block is empty".into());
    }
    let mut at = 0;
    let mut first = true;
    while at < data.len() {
        let (tag, header, len) = packet_header(&data[at..]).ok_or_else(|| {
            format!("the key's data is not OpenPGP packets (a broken packet header at byte {at})")
        })?;
        let end = at
            .checked_add(header)
            .and_then(|h| h.checked_add(len))
            .filter(|e| *e <= data.len())
            .ok_or_else(|| {
                format!("the key's data is cut short (a packet at byte {at} runs past its end)")
            })?;
        if first {
            if tag != 6 {
                return Err(format!(
                    "the key block does not start with a public key packet (tag {tag})"
                ));
            }
            let version = data.get(at + header).copied().unwrap_or(0);
            if !matches!(version, 4..=6) {
                return Err(format!(
                    "the public key packet has version {version}; apt verifies versions 4 to 6"
                ));
            }
            first = false;
        } else if !KEY_PACKETS.contains(&tag) {
            return Err(format!(
                "the key block holds a packet of tag {tag}, which a public key does not carry"
            ));
        }
        at = end;
    }
    Ok(())
}

/// `(tag, header length, body length)`; partial and indeterminate lengths are refused (a
/// key's packets have definite lengths).
fn packet_header(p: &[u8]) -> Option<(u8, usize, usize)> {
    let b = *p.first()?;
    if b & 0x80 == 0 {
        return None;
    }
    if b & 0x40 != 0 {
        let tag = b & 0x3f;
        let o1 = *p.get(1)? as usize;
        return match o1 {
            0..=191 => Some((tag, 2, o1)),
            192..=223 => Some((tag, 3, ((o1 - 192) << 8) + *p.get(2)? as usize + 192)),
            255 => {
                let n = u32::from_be_bytes(p.get(2..6)?.try_into().ok()?) as usize;
                Some((tag, 6, n))
            }
            _ => None,
        };
    }
    let tag = (b >> 2) & 0x0f;
    match b & 3 {
        0 => Some((tag, 2, *p.get(1)? as usize)),
        1 => Some((
            tag,
            3,
            u16::from_be_bytes(p.get(1..3)?.try_into().ok()?) as usize,
        )),
        2 => Some((
            tag,
            5,
            u32::from_be_bytes(p.get(1..5)?.try_into().ok()?) as usize,
        )),
        _ => None,
    }
}

/// RFC 9580 §6.1.1.
fn crc24(data: &[u8]) -> u32 {
    let mut crc: u32 = 0x00B7_04CE;
    for &b in data {
        crc ^= u32::from(b) << 16;
        for _ in 0..8 {
            crc <<= 1;
            if crc & 0x0100_0000 != 0 {
                crc ^= 0x0186_4CFB;
            }
        }
    }
    crc & 0x00FF_FFFF
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An ed25519 signing key made with `gpg --quick-gen-key … ed25519 sign never` and
    /// exported with `gpg --armor --export` (user ID `provision test repository <repo@example.invalid>`).
    pub(crate) const TEST_KEY: &str = include_str!("../../tests/fixtures/test-repo-key.asc");

    fn with_body(f: impl Fn(&str) -> String) -> String {
        let start = TEST_KEY.find("\n\n").unwrap() + 2;
        let end = TEST_KEY.find("-----END").unwrap();
        format!(
            "{}{}{}",
            &TEST_KEY[..start],
            f(&TEST_KEY[start..end]),
            &TEST_KEY[end..]
        )
    }

    #[test]
    fn a_real_armored_key_passes() {
        assert_eq!(openpgp_public_key(TEST_KEY), Ok(()));
        // Without the optional checksum line, and indented in a TOML multi-line string.
        let no_crc: String = TEST_KEY
            .lines()
            .filter(|l| !(l.starts_with('=') && l.len() == 5))
            .map(|l| format!("{l}\n"))
            .collect();
        assert_eq!(openpgp_public_key(&no_crc), Ok(()));
        let indented: String = TEST_KEY.lines().map(|l| format!("    {l}\n")).collect();
        assert_eq!(openpgp_public_key(&indented), Ok(()));
        assert_eq!(armored_key_file(&indented), TEST_KEY);
    }

    #[test]
    fn broken_keys_are_refused_with_what_is_wrong() {
        let cases: Vec<(String, &str)> = vec![
            ("not a key".into(), "starts with"),
            (
                TEST_KEY.replace("-----END PGP PUBLIC KEY BLOCK-----", ""),
                "does not end",
            ),
            (
                TEST_KEY.replace("PUBLIC KEY BLOCK", "PRIVATE KEY BLOCK"),
                "PRIVATE key",
            ),
            (with_body(|b| b.replacen('m', "*", 1)), "not base64"),
            // One changed letter: the checksum catches it.
            (
                with_body(|b| {
                    let i = b.find(|c: char| c.is_ascii_lowercase()).unwrap();
                    let c = b.as_bytes()[i] as char;
                    let swapped = if c == 'a' { 'b' } else { 'a' };
                    format!("{}{swapped}{}", &b[..i], &b[i + 1..])
                }),
                "checksum",
            ),
            // Cut: the first lines only, no checksum.
            (
                with_body(|b| b.lines().take(2).map(|l| format!("{l}\n")).collect()),
                "cut short",
            ),
            (
                format!(
                    "{BEGIN}\n\n{}\n{END}\n",
                    base64::engine::general_purpose::STANDARD.encode(b"hello, this is not a key")
                ),
                "not OpenPGP packets",
            ),
        ];
        for (key, says) in cases {
            let err = openpgp_public_key(&key).expect_err(&key);
            assert!(err.contains(says), "{err}\n{key}");
        }
    }

    #[test]
    fn packet_walk_refuses_a_wrong_first_packet() {
        // A user ID packet alone (new format, tag 13).
        let mut p = vec![0xC0 | 13, 3];
        p.extend(b"abc");
        assert!(packets(&p).unwrap_err().contains("public key packet"));
        // A public key packet whose length runs past the data.
        assert!(packets(&[0xC6, 10, 4]).unwrap_err().contains("cut short"));
        assert_eq!(crc24(b""), 0x00B7_04CE);
    }
}
