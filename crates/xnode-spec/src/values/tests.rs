use super::*;

#[test]
fn sizes() {
    let cases = [
        ("512M", Some(512 << 20)),
        ("2G", Some(2 << 30)),
        ("1048576", Some(1 << 20)),
        ("1K", Some(1024)),
        ("12XB", None),
        ("M", None),
        ("", None),
        ("-1M", None),
        ("1.5G", None),
        ("512m", None),
        ("99999999999999999999", None),
        ("99999999999P", None),
    ];
    for (input, want) in cases {
        assert_eq!(Size::parse(input).ok().map(|s| s.0), want, "{input}");
    }
    assert_eq!(
        Size::parse("12XB").unwrap_err(),
        r#""12XB" is not a size (use e.g. "512M")"#
    );
    for s in ["512M", "2G", "1000", "3K", "5P"] {
        assert_eq!(Size::parse(s).unwrap().to_string(), s);
    }
}

#[test]
fn durations() {
    let cases = [
        ("250ms", Some(250)),
        ("5s", Some(5000)),
        ("2min", Some(120_000)),
        ("1h", Some(3_600_000)),
        ("0s", Some(0)),
        ("5", None),
        ("s", None),
        ("5 s", None),
        ("5sec", None),
        ("1.5s", None),
        ("-5s", None),
        ("99999999999999999999h", None),
    ];
    for (input, want) in cases {
        assert_eq!(
            Duration::parse(input).ok().map(Duration::as_millis),
            want,
            "{input}"
        );
    }
    for (ms, text) in [
        (1000, "1s"),
        (1500, "1500ms"),
        (120_000, "2min"),
        (0, "0ms"),
    ] {
        assert_eq!(Duration::from_millis(ms).to_string(), text);
        assert_eq!(Duration::parse(text).unwrap().as_millis(), ms);
    }
}

#[test]
fn percents() {
    assert_eq!(Percent::parse("50%"), Ok(Percent(50)));
    assert_eq!(Percent::parse("200%"), Ok(Percent(200)));
    for bad in ["0%", "50", "%", "1.5%", "100001%", "-5%"] {
        assert!(Percent::parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn owners() {
    // RFC 8032 test vector 1's public key.
    let ed = "ed25519:11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=";
    assert!(matches!(Owner::parse(ed), Ok(Owner::Ed25519(_))));
    assert_eq!(Owner::parse(ed).unwrap().to_string(), ed);
    // EIP-55's own examples.
    let good = "eth:0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed";
    assert_eq!(Owner::parse(good).unwrap().to_string(), good);
    let lower = "eth:0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed";
    assert_eq!(Owner::parse(lower).unwrap().to_string(), good);
    let bad = [
        "eth:0x5AAeb6053F3E94C9b9A09f33669435E7Ef1BeAed", // checksum broken
        "eth:5aaeb6053f3e94c9b9a09f33669435e7ef1beaed",
        "eth:0x5aaeb6053f3e94c9b9a09f33669435e7ef1bea",
        "eth:0xZZaeb6053f3e94c9b9a09f33669435e7ef1beaed",
        "ed25519:AAAA",
        "ed25519:not base64!",
        "rsa:AAAA",
        "",
    ];
    for b in bad {
        assert!(Owner::parse(b).is_err(), "{b}");
    }
}

#[test]
fn an_ed25519_owner_is_an_openssh_key() {
    // A key pair made by `ssh-keygen -t ed25519`: its .pub line, and the same
    // public key as an owner.
    let owner = Owner::parse("ed25519:19lXUErDvu1fpeijRcQg7nwqCHKIUPB+kF7AVUzbrP8=").unwrap();
    assert_eq!(
        owner.openssh_key().unwrap(),
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAINfZV1BKw77tX6Xoo0XEIO58KghyiFDwfpBewFVM26z/ xnode-owner"
    );
    let eth = Owner::parse("eth:0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed").unwrap();
    assert_eq!(eth.openssh_key(), None);
}

#[test]
fn capabilities() {
    assert_eq!(
        Capability::parse("CAP_NET_BIND_SERVICE").unwrap().as_str(),
        "CAP_NET_BIND_SERVICE"
    );
    assert!(Capability::parse("NET_BIND_SERVICE").is_err());
    assert!(Capability::parse("CAP_EVERYTHING").is_err());
}
