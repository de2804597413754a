//! The rules for names, paths and addresses in a spec, as plain functions returning the
//! reason a value is rejected.

use std::str::FromStr;

use multiaddr::{Multiaddr, Protocol};

/// Longest workload name: keeps `xnode-<name>.service` far below systemd's 255 bytes
/// and names readable in tables.
pub const MAX_WORKLOAD_NAME: usize = 64;

/// Workload names become the unit `xnode-<name>.service`, so they use only characters
/// that need no escaping in a unit name, and no '@' (templates) or '\'.
pub fn workload_name(s: &str) -> Result<(), String> {
    let ok = (1..=MAX_WORKLOAD_NAME).contains(&s.len())
        && s.as_bytes()[0].is_ascii_alphanumeric()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    ok.then_some(()).ok_or_else(|| {
        format!(
            "{s:?} is not a valid workload name: use 1 to {MAX_WORKLOAD_NAME} letters, digits, '-', '_' or '.', \
             starting with a letter or digit (it names the systemd unit xnode-<name>.service)"
        )
    })
}

/// Node names and service names are DNS labels, so they can name hosts and records.
pub fn dns_label(s: &str) -> Result<(), String> {
    let b = s.as_bytes();
    let ok = (1..=63).contains(&b.len())
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-';
    ok.then_some(()).ok_or_else(|| {
        format!("{s:?} is not a valid name: use 1 to 63 letters, digits and '-', not starting or ending with '-'")
    })
}

/// Label keys: like Kubernetes', an optional `prefix/` then a name.
pub fn label_key(s: &str) -> Result<(), String> {
    let ok = (1..=63).contains(&s.len())
        && s.as_bytes()[0].is_ascii_alphanumeric()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'/'));
    ok.then_some(()).ok_or_else(|| {
        format!("{s:?} is not a valid label key: use 1 to 63 letters, digits, '-', '_', '.' or '/', starting with a letter or digit")
    })
}

/// Label values may be empty.
pub fn label_value(s: &str) -> Result<(), String> {
    let ok = s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    ok.then_some(()).ok_or_else(|| {
        format!("{s:?} is not a valid label value: use at most 63 letters, digits, '-', '_' or '.'")
    })
}

/// Text that ends up on a unit-file line: a control character (a newline above all)
/// would let a value inject directives of its own.
pub fn line_text(s: &str) -> Result<(), String> {
    match s.chars().find(|c| c.is_control()) {
        Some(c) => Err(format!(
            "{s:?} contains the control character {c:?}; remove it"
        )),
        None if s.len() > 65_536 => Err("is longer than 64 KiB".into()),
        None => Ok(()),
    }
}

/// An absolute, normalised path: no `.` or `..` segments, so a path cannot climb out
/// of where it claims to be.
pub fn absolute_path(s: &str) -> Result<(), String> {
    line_text(s)?;
    if !s.starts_with('/') {
        return Err(format!("{s:?} is not an absolute path (start it with '/')"));
    }
    if s.len() > 4096 {
        return Err("is longer than 4096 bytes".into());
    }
    if s.split('/').any(|seg| seg == "." || seg == "..") {
        return Err(format!(
            "{s:?} contains '.' or '..'; write the path without them"
        ));
    }
    Ok(())
}

/// An absolute path that systemd's `WorkingDirectory=` reads back unchanged: it strips
/// whitespace at the end of a line.
pub fn working_directory(s: &str) -> Result<(), String> {
    absolute_path(s)?;
    if s.ends_with(char::is_whitespace) {
        return Err(format!(
            "{s:?} ends with whitespace, which systemd would drop; remove it"
        ));
    }
    if s.ends_with('\\') {
        return Err(format!(
            "{s:?} ends with a backslash, which systemd would read as joining the next line; remove it"
        ));
    }
    Ok(())
}

/// Paths of the agent's own secrets: its state (mesh key, join key), the lease relay,
/// its API and the decrypted secrets of every workload. A workload's sandbox hides
/// them, so it may not have systemd read them for it either.
const AGENT_PATHS: [&str; 4] = [
    "/var/lib/xnode",
    "/run/xnode",
    "/run/xnode-secrets",
    "/run/xnoded-lease",
];

/// A file systemd reads as root when the workload starts (`LoadCredential=`,
/// `EnvironmentFile=`): written raw on its line, so one without whitespace, quotes or
/// backslashes, which systemd could read otherwise, as normalised as it requires, and
/// never one of the agent's own.
pub fn loaded_file(s: &str) -> Result<(), String> {
    absolute_path(s)?;
    if let Some(ch) = s
        .chars()
        .find(|c| c.is_whitespace() || matches!(c, '"' | '\'' | '\\'))
    {
        return Err(format!(
            "{s:?} contains {ch:?}; a file systemd loads for a workload is named without whitespace, quotes or backslashes"
        ));
    }
    if s.contains("//") || s.ends_with('/') {
        return Err(format!(
            "{s:?} is not a normalised path (no \"//\", no trailing '/'); systemd would ignore it"
        ));
    }
    if let Some(p) = AGENT_PATHS.iter().find(|p| {
        s == **p
            || s.strip_prefix(**p)
                .is_some_and(|rest| rest.starts_with('/'))
    }) {
        return Err(format!(
            "{s:?} is under {p}, which holds xnoded's own secrets; no workload may read it"
        ));
    }
    Ok(())
}

/// nixbase32's alphabet: digits and letters without e, o, u, t.
const NIXBASE32: &[u8] = b"0123456789abcdfghijklmnpqrsvwxyz";

/// A store path's hash part: 32 characters of nixbase32, what a binary cache and the
/// mesh name a path by.
pub fn hash_part(s: &str) -> Result<(), String> {
    if s.len() == 32 && s.bytes().all(|b| NIXBASE32.contains(&b)) {
        Ok(())
    } else {
        Err(format!(
            "{:?} is not a store path's hash part (32 characters of Nix's base 32)",
            s.chars().take(64).collect::<String>()
        ))
    }
}

/// `/nix/store/<32 nixbase32 chars>-<name>`, the name as Nix allows it; subpaths are
/// not store paths.
pub fn store_path(s: &str) -> Result<(), String> {
    let bad = |why: &str| {
        Err(format!(
            "{s:?} is not a Nix store path ({why}; expected /nix/store/<32-character hash>-<name>)"
        ))
    };
    let Some(base) = s.strip_prefix("/nix/store/") else {
        return bad("it is not under /nix/store/");
    };
    let (hash, name) = match base.split_at_checked(32) {
        Some((hash, rest)) => match rest.strip_prefix('-') {
            Some(name) => (hash, name),
            None => return bad("no '-' after the hash"),
        },
        None => return bad("the hash is too short"),
    };
    if !hash.bytes().all(|b| NIXBASE32.contains(&b)) {
        return bad("the hash has characters outside Nix's base-32 alphabet");
    }
    let name_ok = !name.is_empty()
        && name.len() <= 211
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+-._?=".contains(&b));
    if !name_ok {
        return bad("the name after the hash is empty or has characters Nix does not allow");
    }
    Ok(())
}

/// Environment variable names as a shell would accept them.
pub fn env_name(s: &str) -> Result<(), String> {
    let ok = !s.is_empty()
        && !s.as_bytes()[0].is_ascii_digit()
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    ok.then_some(()).ok_or_else(|| {
        format!("{s:?} is not a valid environment variable name: use letters, digits and '_', not starting with a digit")
    })
}

/// User and group names as systemd accepts them in `User=`.
pub fn user_name(s: &str) -> Result<(), String> {
    let b = s.as_bytes();
    let ok = (1..=31).contains(&b.len())
        && (b[0].is_ascii_alphabetic() || b[0] == b'_')
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'_' || *c == b'-');
    ok.then_some(()).ok_or_else(|| {
        format!("{s:?} is not a valid user or group name: use 1 to 31 letters, digits, '_' or '-', starting with a letter or '_'")
    })
}

fn multiaddr(s: &str) -> Result<Multiaddr, String> {
    Multiaddr::from_str(s)
        .map_err(|e| format!("{s:?} is not a multiaddr ({e}); e.g. \"/ip4/0.0.0.0/tcp/7720\""))
}

/// Splits `/ip…|/dns…` + `/tcp/N` or `/udp/N/quic-v1`, and what follows.
fn host_and_port<'a>(
    s: &str,
    mut parts: impl Iterator<Item = Protocol<'a>>,
) -> Result<(u16, Vec<Protocol<'a>>), String> {
    let host = parts.next();
    if !matches!(
        host,
        Some(
            Protocol::Ip4(_)
                | Protocol::Ip6(_)
                | Protocol::Dns(_)
                | Protocol::Dns4(_)
                | Protocol::Dns6(_)
        )
    ) {
        return Err(format!(
            "{s:?} must start with /ip4, /ip6, /dns, /dns4 or /dns6"
        ));
    }
    let port = match (parts.next(), parts.next()) {
        (Some(Protocol::Tcp(port)), next) => {
            let rest = next.into_iter().chain(parts).collect();
            return Ok((port, rest));
        }
        (Some(Protocol::Udp(port)), Some(Protocol::QuicV1)) => port,
        _ => {
            return Err(format!(
                "{s:?} needs a transport: /tcp/<port> or /udp/<port>/quic-v1"
            ));
        }
    };
    Ok((port, parts.collect()))
}

/// A listen address: a local host and a port, nothing after. Returns the port.
pub fn listen_addr(s: &str) -> Result<u16, String> {
    let addr = multiaddr(s)?;
    let (port, rest) = host_and_port(s, addr.iter())?;
    if !rest.is_empty() {
        return Err(format!(
            "{s:?} has parts after the transport; a listen address ends with the port"
        ));
    }
    Ok(port)
}

/// A bootstrap address: a reachable host and port, optionally `/p2p/<peer id>`.
pub fn bootstrap_addr(s: &str) -> Result<(), String> {
    let addr = multiaddr(s)?;
    let (port, rest) = host_and_port(s, addr.iter())?;
    if port == 0 {
        return Err(format!(
            "{s:?} has port 0; a bootstrap peer needs its real port"
        ));
    }
    match rest.as_slice() {
        [] | [Protocol::P2p(_)] => Ok(()),
        _ => Err(format!(
            "{s:?}: only /p2p/<peer id> may follow the transport"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(check: fn(&str) -> Result<(), String>, good: &[&str], bad: &[&str]) {
        for g in good {
            assert!(check(g).is_ok(), "{g:?} should pass: {:?}", check(g));
        }
        for b in bad {
            assert!(check(b).is_err(), "{b:?} should fail");
        }
    }

    #[test]
    fn workload_names() {
        let long = "a".repeat(65);
        table(
            workload_name,
            &["web", "web-1", "db_main", "a.b", "0day", &"a".repeat(64)],
            &[
                "", "-web", ".web", "we b", "web@1", "web\\x", "wéb", "a/b", &long,
            ],
        );
    }

    #[test]
    fn dns_labels() {
        table(
            dns_label,
            &["n1", "node-a", "A1"],
            &["", "-a", "a-", "a_b", "a.b", &"a".repeat(64)],
        );
    }

    #[test]
    fn labels() {
        table(
            label_key,
            &["zone", "xnode.io/gpu", "a_b"],
            &["", "/zone", "a b", &"k".repeat(64)],
        );
        table(
            label_value,
            &["", "eu-west", "v1.2"],
            &["a b", "a/b", &"v".repeat(64)],
        );
    }

    #[test]
    fn paths() {
        table(
            absolute_path,
            &["/", "/var/lib/web", "/nix/store/x/bin/y"],
            &[
                "",
                "bin/sh",
                "./x",
                "/var/../etc",
                "/a/./b",
                "/a\nb",
                "/a\0b",
            ],
        );
    }

    #[test]
    fn working_directories() {
        table(
            working_directory,
            &["/srv/my dir", "/srv/100%", "/srv/\"quoted\""],
            &["relative", "/srv/dir ", "/srv/dir\t", "/srv/dir\\"],
        );
    }

    #[test]
    fn store_paths() {
        table(
            store_path,
            &[
                "/nix/store/8r6i3khnvzqcqp5xnzbvzr5kk4qpa7h6-hello-2.12.1",
                "/nix/store/00000000000000000000000000000000-a+b_c.d?e=f",
            ],
            &[
                "/nix/store/8r6i3khnvzqcqp5xnzbvzr5kk4qpa7h6",
                "/nix/store/8r6i3khnvzqcqp5xnzbvzr5kk4qpa7h6-",
                "/nix/store/8r6i3khnvzqcqp5xnzbvzr5kk4qpa7he-hello",
                "/nix/store/short-hello",
                "/nix/store/8r6i3khnvzqcqp5xnzbvzr5kk4qpa7h6-.hidden",
                "/nix/store/8r6i3khnvzqcqp5xnzbvzr5kk4qpa7h6-a/b",
                "/usr/store/8r6i3khnvzqcqp5xnzbvzr5kk4qpa7h6-hello",
                "/nix/store/8r6i3khnvzqcqp5xnzbvzr5kk4qpa7h6xhello",
                "/nix/store/ü",
            ],
        );
    }

    #[test]
    fn env_and_users() {
        table(
            env_name,
            &["PATH", "_X", "A1"],
            &["", "1A", "A-B", "A B", "A=B"],
        );
        table(
            user_name,
            &["root", "nginx", "_svc", "www-data"],
            &["", "1x", "a b", "a:b", &"u".repeat(32)],
        );
    }

    #[test]
    fn multiaddrs() {
        let listen = |s: &str| listen_addr(s).map(|_| ());
        table(
            listen,
            &[
                "/ip4/0.0.0.0/tcp/7720",
                "/ip6/::/tcp/0",
                "/ip4/127.0.0.1/udp/7720/quic-v1",
            ],
            &[
                "",
                "0.0.0.0:7720",
                "/ip4/0.0.0.0",
                "/ip4/0.0.0.0/udp/1",
                "/tcp/1",
                "/ip4/1.2.3.4/tcp/1/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN",
            ],
        );
        assert_eq!(listen_addr("/ip4/0.0.0.0/tcp/4001"), Ok(4001));
        table(
            bootstrap_addr,
            &[
                "/ip4/10.0.0.1/tcp/7720",
                "/dns4/boot.example.org/tcp/7720/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN",
                "/ip6/::1/udp/7720/quic-v1",
            ],
            &[
                "/ip4/10.0.0.1/tcp/0",
                "/ip4/10.0.0.1/tcp/1/p2p/notapeer",
                "/ip4/10.0.0.1/tcp/1/ws",
                "/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN",
            ],
        );
    }
}
