//! What the `http` tool may call: `allow_hosts` (host and port, checked on every hop) and
//! `allow_addresses` (the special addresses a configuration opens explicitly).

use std::net::IpAddr;

use ipnet::IpNet;
use reqwest::Url;

use super::addr;

/// One `allow_hosts` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostRule {
    /// Normalised as the URL parser normalises hosts (lowercase, IDNA, IPv4 shorthand such as
    /// `127.1` spelled out, IPv6 bracketed and compressed), without a trailing dot.
    host: String,
    /// `*.host`: any subdomain of `host`, not `host` itself.
    wildcard: bool,
    /// `None`: the scheme's default port only (80 for http, 443 for https).
    port: Option<u16>,
}

impl HostRule {
    /// Parses `host`, `host:port`, `[v6]`, `[v6]:port` or `*.domain[:port]`.
    pub fn parse(entry: &str) -> Result<Self, String> {
        let bad = |why: &str| format!("allow_hosts entry `{entry}`: {why}");
        if entry.is_empty() || entry.contains(['/', '@', '?', '#', '\\', '%']) || entry.contains(char::is_whitespace) {
            return Err(bad("expected `host` or `host:port` (no scheme, path or credentials)"));
        }
        let (host, port) = if entry.starts_with('[') {
            let end = entry.find(']').ok_or_else(|| bad("unclosed `[`"))?;
            match &entry[end + 1..] {
                "" => (&entry[..=end], None),
                rest => {
                    (&entry[..=end], Some(rest.strip_prefix(':').ok_or_else(|| bad("expected `:port` after `]`"))?))
                }
            }
        } else {
            match entry.matches(':').count() {
                0 => (entry, None),
                1 => entry.split_once(':').map(|(h, p)| (h, Some(p))).unwrap_or((entry, None)),
                _ => return Err(bad("write IPv6 addresses in brackets: `[::1]:8080`")),
            }
        };
        let port = match port {
            None => None,
            Some(p) => match p.parse::<u16>() {
                Ok(n) if n > 0 => Some(n),
                _ => return Err(bad("the port must be a number from 1 to 65535")),
            },
        };
        let (wildcard, host) = match host.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, host),
        };
        if host.contains('*') {
            return Err(bad("a wildcard is only allowed as a whole first label: `*.example.com`"));
        }
        let url = Url::parse(&format!("http://{host}/")).map_err(|e| bad(&e.to_string()))?;
        let normal = normal_host(url.host_str().ok_or_else(|| bad("no host"))?).to_owned();
        if wildcard && (ip_of(&normal).is_some() || normal.split('.').count() < 2) {
            return Err(bad(
                "a wildcard needs a domain of at least two labels (`*.example.com`), not an address or a top-level domain",
            ));
        }
        Ok(Self { host: normal, wildcard, port })
    }

    fn matches(&self, host: &str, port: u16, default_port: u16) -> bool {
        let host_ok = if self.wildcard {
            host.strip_suffix(self.host.as_str()).is_some_and(|sub| sub.len() > 1 && sub.ends_with('.'))
                && ip_of(host).is_none()
        } else {
            host == self.host
        };
        host_ok && port == self.port.unwrap_or(default_port)
    }
}

/// A host as the URL parser gives it, without one trailing dot (`localhost.` is `localhost`).
fn normal_host(host: &str) -> &str {
    host.strip_suffix('.').unwrap_or(host)
}

/// The address of an IP-literal host (`127.0.0.1`, `[::1]`), as the URL parser normalised it.
pub fn ip_of(host: &str) -> Option<IpAddr> {
    host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host).parse().ok()
}

/// The `http` tool's checks.
#[derive(Debug, Default)]
pub struct Policy {
    hosts: Vec<HostRule>,
    addresses: Vec<IpNet>,
    /// The entries as written, for messages.
    listed: String,
}

impl Policy {
    /// The policy of `allow_hosts` and `allow_addresses` (addresses or CIDR ranges).
    pub fn new(allow_hosts: &[String], allow_addresses: &[String]) -> Result<Self, String> {
        let hosts = allow_hosts.iter().map(|h| HostRule::parse(h)).collect::<Result<Vec<_>, _>>()?;
        let addresses = allow_addresses
            .iter()
            .map(|a| {
                a.parse::<IpNet>()
                    .or_else(|_| a.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| format!("allow_addresses entry `{a}`: expected an address or a CIDR range"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { hosts, addresses, listed: allow_hosts.join(", ") })
    }

    /// Whether the tool may connect to `ip`: an ordinary public address, or a special one
    /// (or one embedding a special IPv4 address) that `allow_addresses` names.
    pub fn check_addr(&self, ip: IpAddr) -> Result<(), String> {
        let Some(what) = addr::special(ip) else { return Ok(()) };
        let named = |a: IpAddr| self.addresses.iter().any(|n| n.contains(&a));
        let embedded = match ip {
            IpAddr::V6(v6) => addr::embedded_v4(v6).map(|(_, v4)| IpAddr::V4(v4)),
            IpAddr::V4(_) => None,
        };
        if named(ip) || embedded.is_some_and(named) {
            return Ok(());
        }
        Err(format!("{ip} is {what}; only allow_addresses can open it"))
    }

    /// Checks one hop's URL: http or https, no credentials, host and port on `allow_hosts`,
    /// and an IP-literal host's address (a name's addresses are checked when it is resolved).
    pub fn check_url(&self, u: &Url) -> Result<(), String> {
        let default_port = match u.scheme() {
            "http" => 80,
            "https" => 443,
            _ => return Err("only http and https URLs are allowed".into()),
        };
        if !u.username().is_empty() || u.password().is_some() {
            return Err("credentials in the URL (`user:pass@`) are refused".into());
        }
        let Some(raw) = u.host_str() else { return Err("the URL has no host".into()) };
        let host = normal_host(raw);
        let port = u.port_or_known_default().unwrap_or(default_port);
        if !self.hosts.iter().any(|r| r.matches(host, port, default_port)) {
            return Err(format!("host `{host}` port {port} is not allowed (allow_hosts: {})", self.listed));
        }
        match ip_of(host) {
            Some(ip) => self.check_addr(ip),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(hosts: &[&str], addresses: &[&str]) -> Policy {
        let s = |v: &[&str]| v.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>();
        Policy::new(&s(hosts), &s(addresses)).unwrap()
    }

    fn check(p: &Policy, url: &str) -> Result<(), String> {
        p.check_url(&Url::parse(url).map_err(|e| e.to_string())?)
    }

    #[test]
    fn entries_parse_or_are_refused() {
        let r = HostRule::parse("API.Example.com").unwrap();
        assert_eq!((r.host.as_str(), r.wildcard, r.port), ("api.example.com", false, None));
        assert_eq!(HostRule::parse("127.1:8080").unwrap().host, "127.0.0.1");
        assert_eq!(HostRule::parse("[::1]:8080").unwrap().port, Some(8080));
        assert_eq!(HostRule::parse("[0:0::1]").unwrap().host, "[::1]");
        assert_eq!(HostRule::parse("localhost.").unwrap().host, "localhost");
        assert!(HostRule::parse("*.example.com:8443").unwrap().wildcard);
        for bad in [
            "",
            "http://x",
            "x/y",
            "u@x",
            "x:0",
            "x:99999",
            "x:",
            "::1",
            "[::1",
            "[::1]x",
            "*",
            "*.com",
            "a.*.com",
            "*.10.0.0.1",
            "x y",
        ] {
            assert!(HostRule::parse(bad).is_err(), "{bad}");
        }
        assert!(Policy::new(&[], &["10.0.0.0/8".into(), "::1".into(), "127.0.0.1".into()]).is_ok());
        assert!(Policy::new(&[], &["localhost".into()]).unwrap_err().contains("allow_addresses"));
    }

    #[test]
    fn a_bare_host_means_the_default_port_only() {
        let p = policy(&["example.com", "api.example.com:8443"], &[]);
        assert!(check(&p, "http://example.com/x").is_ok());
        assert!(check(&p, "https://example.com/x").is_ok());
        assert!(check(&p, "http://example.com:80/x").is_ok());
        assert!(check(&p, "http://example.com:443/").unwrap_err().contains("port 443 is not allowed"));
        assert!(check(&p, "https://example.com:8080/").unwrap_err().contains("not allowed"));
        assert!(check(&p, "https://api.example.com:8443/").is_ok());
        assert!(check(&p, "https://api.example.com/").unwrap_err().contains("not allowed"));
        assert!(check(&p, "http://EXAMPLE.com./").is_ok(), "trailing dot and case are normalised");
        assert!(check(&p, "http://example.com.evil.net/").is_err());
    }

    #[test]
    fn wildcards_match_subdomains_only() {
        let p = policy(&["*.example.com"], &[]);
        assert!(check(&p, "https://a.example.com/").is_ok());
        assert!(check(&p, "https://a.b.example.com/").is_ok());
        assert!(check(&p, "https://example.com/").is_err());
        assert!(check(&p, "https://badexample.com/").is_err());
        assert!(check(&p, "https://a.example.com:8443/").is_err());
    }

    #[test]
    fn schemes_credentials_and_literal_addresses_are_checked() {
        let p = policy(&["example.com", "127.0.0.1:8080", "[::1]:8080", "10.1.2.3"], &[]);
        assert!(check(&p, "file:///etc/passwd").unwrap_err().contains("only http"));
        assert!(check(&p, "ftp://example.com/").unwrap_err().contains("only http"));
        assert!(check(&p, "gopher://example.com:80/").unwrap_err().contains("only http"));
        assert!(check(&p, "http://user:pass@example.com/").unwrap_err().contains("credentials"));
        assert!(check(&p, "http://user@example.com/").unwrap_err().contains("credentials"));
        // Every spelling of 127.0.0.1 is normalised by the URL parser, then refused as loopback.
        for url in [
            "http://127.0.0.1:8080/",
            "http://127.1:8080/",
            "http://0x7f.1:8080/",
            "http://0x7f000001:8080/",
            "http://2130706433:8080/",
            "http://017700000001:8080/",
            "http://127.0.0.1.:8080/",
            "http://[::1]:8080/",
            "http://[0:0:0:0:0:0:0:1]:8080/",
        ] {
            let e = check(&p, url).unwrap_err();
            assert!(e.contains("loopback") && e.contains("allow_addresses"), "{url}: {e}");
        }
        assert!(check(&p, "http://10.1.2.3/").unwrap_err().contains("private"));
        // Mapped forms reach 127.0.0.1 but are other hosts: not on the list.
        assert!(check(&p, "http://[::ffff:127.0.0.1]:8080/").unwrap_err().contains("not allowed"));
        let mapped = policy(&["[::ffff:7f00:1]:8080", "[64:ff9b::7f00:1]:8080", "[2002:7f00:1::]:8080"], &[]);
        for url in
            ["http://[::ffff:127.0.0.1]:8080/", "http://[64:ff9b::127.0.0.1]:8080/", "http://[2002:7f00:1::]:8080/"]
        {
            assert!(check(&mapped, url).unwrap_err().contains("127.0.0.1, loopback"), "{url}");
        }
    }

    #[test]
    fn allow_addresses_open_what_they_name() {
        let p =
            policy(&["127.0.0.1:8080", "[::1]:8080", "10.9.9.9", "[::ffff:7f00:1]:8080"], &["127.0.0.1", "10.0.0.0/8"]);
        assert!(check(&p, "http://127.1:8080/").is_ok());
        assert!(check(&p, "http://10.9.9.9/").is_ok());
        assert!(check(&p, "http://[::ffff:127.0.0.1]:8080/").is_ok(), "the mapped form of a named address");
        assert!(check(&p, "http://[::1]:8080/").unwrap_err().contains("loopback"));
        assert!(p.check_addr("127.0.0.2".parse().unwrap()).is_err());
        assert!(p.check_addr("169.254.169.254".parse().unwrap()).unwrap_err().contains("metadata"));
        assert!(p.check_addr("93.184.215.14".parse().unwrap()).is_ok());
    }
}
