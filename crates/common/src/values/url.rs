//! Mirror and repository URLs: what goes into an apt source (one-line or deb822), a key
//! download and Docker's `registry-mirrors`.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::DomainName;

/// Characters a path of a mirror URL may hold: RFC 3986's unreserved characters, `/`,
/// `%` escapes and a few sub-delimiters. Nothing an apt source line reads as syntax
/// (spaces, `[`, `]`, `#`), no quotes.
fn path_char(c: char) -> bool {
    c.is_ascii_alphanumeric()
        || matches!(
            c,
            '-' | '.' | '_' | '~' | '/' | '%' | '+' | ',' | '=' | ':' | '@'
        )
}

/// An `http://` or `https://` URL of a mirror, a repository or a key: a host name or IP
/// address (IPv6 in brackets), an optional port, an optional path. No user or password
/// (apt reads those from `auth.conf`, Docker from `docker login`), no query or fragment,
/// no spaces, quotes or control characters.
pub(crate) fn http_url(s: &str) -> Result<(), String> {
    let short: String = s.chars().take(80).collect();
    let Some((scheme, rest)) = s.split_once("://") else {
        return Err(format!(
            "{short:?} is not a URL: expected http://HOST[:PORT][/PATH] or https://…"
        ));
    };
    if scheme != "http" && scheme != "https" {
        return Err(format!(
            "{short:?}: the scheme {scheme:?} is not http or https (apt and Docker fetch mirrors over HTTP(S))"
        ));
    }
    if let Some(c) = s.chars().find(|c| c.is_control() || c.is_whitespace()) {
        return Err(format!(
            "{short:?} contains {c:?}: a URL has no spaces or control characters"
        ));
    }
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    if authority.contains('@') {
        return Err(format!(
            "{short:?} carries a user or password: keep credentials out of the inventory (apt reads them from /etc/apt/auth.conf.d)"
        ));
    }
    if let Some(c) = path.chars().find(|c| matches!(c, '?' | '#')) {
        return Err(format!(
            "{short:?} has a {} (`{c}`): a mirror URL is a host and a path",
            if c == '?' { "query" } else { "fragment" }
        ));
    }
    if let Some(c) = path.chars().find(|c| !path_char(*c)) {
        return Err(format!(
            "{short:?}: {c:?} is not allowed in the path (letters, digits, `-._~/%+,=:@`)"
        ));
    }
    if path.contains("//") || path.split('/').any(|p| p == "..") {
        return Err(format!(
            "{short:?}: the path has an empty or `..` component"
        ));
    }
    let (host, port) = split_host_port(authority)
        .ok_or_else(|| format!("{short:?}: {authority:?} is not HOST or HOST:PORT"))?;
    if let Some(p) = port {
        let ok = !p.is_empty()
            && p.len() <= 5
            && p.chars().all(|c| c.is_ascii_digit())
            && p.parse::<u32>().is_ok_and(|n| (1..=65535).contains(&n));
        if !ok {
            return Err(format!("{short:?}: the port {p:?} is not 1-65535"));
        }
    }
    let host_ok = if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        v6.parse::<std::net::Ipv6Addr>().is_ok()
    } else if host.chars().all(|c| c.is_ascii_digit() || c == '.') {
        host.parse::<std::net::Ipv4Addr>().is_ok()
    } else {
        DomainName::parse(host).is_ok() && !host.starts_with('*') || single_label(host)
    };
    if !host_ok {
        return Err(format!(
            "{short:?}: {host:?} is not a host name or IP address"
        ));
    }
    Ok(())
}

/// The URL of a service the controller talks to itself (an ACME directory, a DNS provider's
/// API): `https://`, or plain `http://` to this machine only (test servers such as Pebble
/// and its DNS), with no spaces or control characters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ServiceUrl(String);

impl ServiceUrl {
    pub fn parse(s: &str) -> Result<ServiceUrl, String> {
        if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!(
                "{s:?} is not an https:// URL: a URL has no spaces or control characters"
            ));
        }
        if let Some(rest) = s.strip_prefix("http://") {
            let authority = rest.split('/').next().unwrap_or_default();
            let host = match authority.rsplit_once(':') {
                Some((h, p)) if p.chars().all(|c| c.is_ascii_digit()) => h,
                _ => authority,
            };
            if matches!(host, "127.0.0.1" | "localhost" | "[::1]") {
                return Ok(ServiceUrl(s.to_string()));
            }
            return Err(format!(
                "{s:?} is plain HTTP; use https:// (plain HTTP is accepted only to this machine: 127.0.0.1, localhost, [::1])"
            ));
        }
        match s.strip_prefix("https://") {
            Some(rest) if !rest.is_empty() && !rest.starts_with('/') => {
                Ok(ServiceUrl(s.to_string()))
            }
            _ => Err(format!("{s:?} is not an https:// URL")),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ServiceUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

super::string_value!(ServiceUrl);

/// `mirror` (a name on a private network) is a host too.
fn single_label(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 63
        && !host.starts_with('-')
        && !host.ends_with('-')
        && host.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

/// `host`, `host:port`, `[v6]`, `[v6]:port`.
fn split_host_port(authority: &str) -> Option<(&str, Option<&str>)> {
    if authority.starts_with('[') {
        let end = authority.find(']')?;
        let (host, rest) = authority.split_at(end + 1);
        return match rest {
            "" => Some((host, None)),
            r => r.strip_prefix(':').map(|p| (host, Some(p))),
        };
    }
    match authority.split_once(':') {
        Some((h, p)) => Some((h, Some(p))),
        None => Some((authority, None)),
    }
    .filter(|(h, _)| !h.is_empty())
}

/// The host of a URL the rule above accepted (no port, IPv6 without brackets): what apt
/// calls a repository's origin (`Pin: origin HOST`).
pub fn url_host(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split('/').next().unwrap_or_default();
    match split_host_port(authority) {
        Some((h, _)) => h
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(h),
        None => authority,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirror_urls_are_http_hosts_and_paths() {
        for good in [
            "https://mirrors.example.edu.cn/ubuntu",
            "https://mirrors.example.edu.cn/ubuntu/",
            "http://10.77.3.1:8080/linux",
            "http://[2001:db8::1]:8080/debian",
            "http://mirror/debian",
            "https://registry.example.cn",
            "https://mirror.example.cn/docker-ce/linux/ubuntu/gpg",
        ] {
            assert_eq!(http_url(good), Ok(()), "{good}");
        }
        for (bad, says) in [
            ("ftp://mirror.example.cn/debian", "not http or https"),
            ("file:/srv/mirror", "not a URL"),
            ("mirrors.example.cn/ubuntu", "not a URL"),
            (
                "https://user:pw@mirror.example.cn/ubuntu",
                "user or password",
            ),
            (
                "https://mirror.example.cn/ubuntu bookworm main",
                "no spaces",
            ),
            ("https://mirror.example.cn/ubuntu\nSuites: x", "control"),
            ("https://mirror.example.cn/ubuntu?x=1", "query"),
            ("https://mirror.example.cn/ubuntu#x", "fragment"),
            ("https://mirror.example.cn/[trusted=yes]", "not allowed"),
            ("https://mirror.example.cn/'$(id)'", "not allowed"),
            ("https://mirror.example.cn:0/ubuntu", "port"),
            ("https://mirror.example.cn:99999/ubuntu", "port"),
            ("https://-x.example.cn/ubuntu", "not a host name"),
            ("https:///ubuntu", "not HOST"),
            ("https://a..b/ubuntu", "not a host name"),
            ("https://999.1.1.1/ubuntu", "not a host name"),
            ("https://mirror.example.cn/../etc", "`..`"),
        ] {
            let err = http_url(bad).expect_err(bad);
            assert!(err.contains(says), "{bad}: {err}");
        }
    }

    #[test]
    fn service_urls_are_https_or_plain_http_to_this_machine() {
        for good in [
            "https://ca.example/dir",
            "https://10.77.0.2:14000/dir",
            "http://127.0.0.1:8055",
            "http://localhost/x",
            "http://[::1]:9999/client/v4/",
        ] {
            assert_eq!(ServiceUrl::parse(good).unwrap().as_str(), good);
        }
        for (bad, says) in [
            ("ftp://x", "not an https:// URL"),
            ("x", "not an https:// URL"),
            ("https://", "not an https:// URL"),
            ("https:///dir", "not an https:// URL"),
            ("http://acme.example.com/dir", "plain HTTP"),
            ("http://127.0.0.1.example/dir", "plain HTTP"),
            ("https://ca.example/a b", "no spaces"),
            ("https://ca.example/\n", "control"),
        ] {
            let err = ServiceUrl::parse(bad).expect_err(bad);
            assert!(err.contains(says), "{bad}: {err}");
        }
    }

    #[test]
    fn the_host_of_a_url_is_its_apt_origin() {
        assert_eq!(
            url_host("https://mirrors.example.cn/docker-ce"),
            "mirrors.example.cn"
        );
        assert_eq!(url_host("http://10.77.3.1:8080/x"), "10.77.3.1");
        assert_eq!(url_host("http://[2001:db8::1]:80/x"), "2001:db8::1");
        assert_eq!(url_host("https://example.cn"), "example.cn");
    }
}
