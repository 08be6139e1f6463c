use super::*;

fn parse(s: &str) -> Result<Config, ConfigError> {
    Config::parse(s, "t.yaml")
}

#[test]
fn full_config_parses() {
    let c = parse(
        "interfaces: [eth0, wan1]\nxdp_mode: skb\nmode: monitor\npolicy: inspect\n\
         sip_ports: [5060, \"5070-5080\"]\ntrusted:\n  - 203.0.113.10\n  - 2001:db8::/32\nblocked: [198.51.100.0/24]\n",
    )
    .unwrap();
    assert_eq!(c.interfaces, vec!["eth0", "wan1"]);
    assert_eq!(c.xdp_mode, XdpModeSetting::Skb);
    assert_eq!(c.mode, Mode::Monitor);
    assert_eq!(c.policy, UntrustedPolicy::Inspect);
    assert_eq!(
        c.sip_ports,
        vec![
            PortRange {
                first: 5060,
                last: 5060
            },
            PortRange {
                first: 5070,
                last: 5080
            }
        ]
    );
    assert_eq!(c.trusted.len(), 2);
    assert_eq!(c.blocked[0].to_string(), "198.51.100.0/24");
}

#[test]
fn defaults_apply() {
    let c = parse("trusted: [192.0.2.1]\n").unwrap();
    assert_eq!(c.mode, Mode::Enforce);
    assert_eq!(c.policy, UntrustedPolicy::Drop);
    assert_eq!(c.xdp_mode, XdpModeSetting::Auto);
    assert_eq!(c.sip_ports, default_ports());
}

#[test]
fn embedded_default_is_valid_inspect() {
    let c = Config::embedded_default().unwrap();
    assert_eq!(c.policy, UntrustedPolicy::Inspect);
    assert_eq!(c.mode, Mode::Enforce);
}

fn expect_err(s: &str, line: Option<usize>, needle: &str) {
    let e = parse(s).unwrap_err();
    assert_eq!(e.line, line, "{e}");
    assert!(
        e.to_string().contains(needle),
        "'{e}' does not mention '{needle}'"
    );
}

#[test]
fn errors_name_field_and_line() {
    for (yaml, line, needle) in [
        (
            "trusted: [192.0.2.1]\ntrustd: [1.2.3.4]\n",
            Some(2),
            "unknown field `trustd`",
        ),
        (
            "trusted:\n  - 192.0.2.1\n  - 300.1.2.3\n",
            Some(3),
            "trusted[1]",
        ),
        (
            "trusted:\n  - 192.0.2.1\n  - 300.1.2.3\n",
            Some(3),
            "'300.1.2.3' is not an IPv4/IPv6 address or CIDR",
        ),
        ("trusted: [10.0.0.1/24]\n", Some(1), "host bits set"),
        ("sip_ports: [70000]\n", Some(1), "out of range"),
        ("sip_ports: [0]\n", Some(1), "out of range"),
        ("sip_ports: [-5]\n", Some(1), "out of range"),
        ("sip_ports:\n  - \"5080-5060\"\n", Some(2), "reversed"),
        ("sip_ports: []\n", Some(1), "at least one port"),
        (
            "mode: loud\n",
            Some(1),
            "mode: unknown value `loud`, expected one of `enforce`, `monitor`",
        ),
        ("trusted: 5\n", Some(1), "trusted"),
        ("interfaces: [eth0, eth1, eth0]\n", Some(1), "listed twice"),
        (
            "interfaces:\n  - eth0\n  - eth1\n  - eth0\n",
            Some(4),
            "interfaces: interface 'eth0' is listed twice",
        ),
        (
            "policy: drop\nmode: enforce\npolicy: inspect\n",
            Some(3),
            "policy: is set twice",
        ),
        (
            "trusted:\n#  - 192.0.2.1\n",
            Some(1),
            "trusted: has no value",
        ),
        ("mode:\n", Some(1), "mode: has no value"),
        (
            "policy: {a: 1}\n",
            Some(1),
            "policy: invalid type: map, expected one of `drop`, `inspect`",
        ),
        (
            "trusted: [192.0.2.1\n",
            Some(2),
            "trusted: did not find expected",
        ),
        (
            "policy: drop\ntrusted:\n\t- 192.0.2.1\n",
            Some(3),
            "trusted: found character that cannot start any token",
        ),
        ("---\n", None, "empty"),
        // Old Mac line ends (found by the config fuzz target): lines count
        // as YAML counts them.
        (
            "policy: drop\rtrusted:\r  - 192.0.2.1\r  - 300.1.2.3\r",
            Some(4),
            "trusted[1]",
        ),
        (
            "policy: drop\r\nsip_ports: [0]\r\n",
            Some(2),
            "sip_ports[0]",
        ),
        (
            "trusted: [192.0.2.0/24]\rblocked:\r  - 192.0.2.7\r",
            Some(3),
            "both trusted and blocked",
        ),
        (
            "policy: drop\rpolicy: drop\r",
            Some(2),
            "policy: is set twice",
        ),
        ("~\n", None, "empty"),
        ("- a\n", Some(1), "expected settings as `key: value` lines"),
        (
            "trusted: [192.0.2.0/24]\nblocked:\n  - 192.0.2.7\n",
            Some(3),
            "both trusted and blocked",
        ),
        ("", None, "empty"),
        ("   \n# only a comment\n", None, "empty"),
    ] {
        expect_err(yaml, line, needle);
    }
}

#[test]
fn inspect_section() {
    let c = parse(
        "policy: inspect\ninspect:\n  drop_methods: [message, SUBSCRIBE]\n  extra_user_agents: [EvilScan]\n  \
         drop_ip_uri: true\n  expected_users: [alice, \"+4930123\"]\n  sipvicious: false\n",
    )
    .unwrap();
    assert_eq!(c.inspect.drop_methods, vec!["message", "SUBSCRIBE"]);
    assert!(c.inspect.drop_ip_uri && !c.inspect.sipvicious && c.inspect.drop_not_sip);
    let uas = c.inspect.scanner_user_agents();
    assert!(uas.contains(&"evilscan".to_string()) && uas.contains(&"friendly-scanner".to_string()));
    let only = parse("inspect:\n  user_agents: [Foo]\n").unwrap();
    assert_eq!(only.inspect.scanner_user_agents(), vec!["foo"]);
    let none = parse("inspect:\n  user_agents: []\n").unwrap();
    assert!(none.inspect.scanner_user_agents().is_empty());
    let d = parse("policy: inspect\n").unwrap();
    assert_eq!(d.inspect, Inspect::default());
    assert_eq!(
        d.inspect.scanner_user_agents().len(),
        DEFAULT_SCANNER_USER_AGENTS.len()
    );
}

#[test]
fn inspect_errors_name_field_and_line() {
    expect_err(
        "inspect:\n  drop_methodz: [INVITE]\n",
        Some(2),
        "unknown field `drop_methodz`",
    );
    expect_err(
        "inspect:\n  drop_methods:\n    - INVITE\n    - FOO\n",
        Some(4),
        "unknown SIP method 'FOO'",
    );
    expect_err(
        "inspect:\n  extra_user_agents: [\"\"]\n",
        Some(2),
        "user agent prefix",
    );
    let long = "x".repeat(40);
    expect_err(
        &format!("trusted: [192.0.2.1]\ninspect:\n  user_agents: [{long}]\n"),
        Some(3),
        "1-32 printable",
    );
    expect_err(
        "inspect:\n  expected_users: [\"a b\"]\n",
        Some(2),
        "expected_users",
    );
    expect_err(
        "inspect:\n  expected_users: [bob, bob]\n",
        Some(2),
        "listed twice",
    );
    expect_err("inspect:\n  sipvicious: maybe\n", Some(2), "sipvicious");
}

#[test]
fn trusted_names_and_dns() {
    let c = parse(
        "trusted: [192.0.2.1, SIP.Provider.example., sip.provider.example, \"2001:db8::/32\", pbx]\n\
         dns: {servers: [\"192.0.2.53:5353\", \"2001:db8::53\"], min_ttl: 1}\n",
    )
    .unwrap();
    assert_eq!(c.trusted_names(), vec!["sip.provider.example", "pbx"]);
    assert_eq!(c.trusted_nets().count(), 2);
    assert_eq!(c.dns.servers[0].0, "192.0.2.53:5353".parse().unwrap());
    assert_eq!(c.dns.servers[1].0, "[2001:db8::53]:53".parse().unwrap());
    assert_eq!((c.dns.min_ttl, c.dns.max_ttl), (1, 3600));
    assert_eq!(
        parse("trusted: [a.b]\n").unwrap().dns,
        DnsSettings::default()
    );
    expect_err(
        "trusted:\n  - sip provider.example\n",
        Some(2),
        "'sip provider.example' is not an IPv4/IPv6 address, a CIDR or a DNS name",
    );
    expect_err("trusted:\n  - -bad.example\n", Some(2), "trusted[0]");
    expect_err(
        "trusted: [a..b]\n",
        Some(1),
        "not an IPv4/IPv6 address, a CIDR or a DNS name",
    );
    expect_err(
        "trusted: [1.2.3.4.5]\n",
        Some(1),
        "not an IPv4/IPv6 address or CIDR",
    );
    expect_err(
        "dns:\n  servers: [\"nowhere\"]\n",
        Some(2),
        "'nowhere' is not a name server address",
    );
    expect_err(
        "dns:\n  min_ttl: 0\n",
        Some(2),
        "dns: min_ttl must be at least 1",
    );
    expect_err("dns:\n  retries: 3\n", Some(2), "unknown field `retries`");
    let c = parse("learn_registrars: {enabled: true, ttl: 2}\n").unwrap();
    assert_eq!(
        c.learn_registrars,
        LearnRegistrars {
            enabled: true,
            ttl: 2
        }
    );
    assert_eq!(
        parse("learn_registrars: {}\n").unwrap().learn_registrars,
        LearnRegistrars::default()
    );
    expect_err(
        "learn_registrars:\n  ttl: 0\n",
        Some(2),
        "learn_registrars: ttl must be between",
    );
    expect_err(
        "learn_registrars:\n  enable: true\n",
        Some(2),
        "unknown field `enable`",
    );
}

#[test]
fn operations_sections_parse() {
    let c = parse(
        "trusted: [192.0.2.1]\nfeeds: [/etc/sipguard/feed.txt]\non_exit: keep\nfragments: pass\n\
         events:\n  log: json\n  interval: 250ms\n  socket: /tmp/x.sock\n  max_per_second: 50\n\
         bans:\n  threshold: 3\n  window: 10s\n  ttl: 2m\n  ipv6_prefix: 56\nmetrics:\n  listen: 127.0.0.1:9560\n",
    )
    .unwrap();
    assert_eq!(c.on_exit, OnExit::Keep);
    assert_eq!(c.fragments, FragmentPolicy::Pass);
    assert_eq!(c.events.log, EventLog::Json);
    assert_eq!(c.events.interval.0, std::time::Duration::from_millis(250));
    assert_eq!(c.events.max_per_second, 50);
    assert_eq!(
        parse("events:\n  log: off\n")
            .unwrap()
            .events
            .max_per_second,
        super::sections::DEFAULT_EVENTS_PER_SECOND
    );
    assert_eq!(c.bans.ttl.0, std::time::Duration::from_secs(120));
    assert_eq!(c.bans.ipv6_prefix, 56);
    assert!(!c.bans_enabled(), "off by default under policy: drop");
    assert!(
        Config::embedded_default().unwrap().bans_enabled(),
        "on by default under inspect"
    );
    assert_eq!(c.metrics.listen.unwrap().port(), 9560);
    expect_err("bans:\n  ttl: 5 weeks\n", Some(2), "duration");
    expect_err("bans:\n  ipv6_prefix: 129\n", Some(2), "out of range");
    expect_err("on_exit: maybe\n", Some(1), "unknown value `maybe`");
}

#[test]
fn missing_file_is_a_clear_error() {
    let e = Config::load(Path::new("/nonexistent/sipguard.yaml")).unwrap_err();
    assert!(e.to_string().contains("cannot read config file"), "{e}");
}

#[test]
fn crowdsec_section_is_accepted_and_checked() {
    let c = parse(
        "trusted: [192.0.2.1]\ncrowdsec:\n  url: http://127.0.0.1:8080\n  api_key_file: /etc/sipguard/crowdsec.key\n",
    )
    .unwrap();
    let cs = c.crowdsec.expect("crowdsec section");
    assert_eq!(cs.interval.0, std::time::Duration::from_secs(10));
    assert_eq!(cs.origins, None);
    assert!(parse("trusted: [192.0.2.1]\n").unwrap().crowdsec.is_none());
    expect_err(
        "trusted: [192.0.2.1]\ncrowdsec:\n  api_key_file: k\n  url: 127.0.0.1:8080\n",
        Some(4),
        "crowdsec: url: '127.0.0.1:8080' is not an http:// or https:// URL",
    );
    expect_err(
        "crowdsec:\n  url: http://h\n  api_key_file: k\n  interval: 0s\n",
        Some(4),
        "crowdsec: interval: 0s is out of range (1s to 1h)",
    );
    expect_err(
        "crowdsec:\n  url: http://h\n  api_key_file: k\n  origins: [\"a b\"]\n",
        Some(4),
        "crowdsec: origins: 'a b' is not an origin name",
    );
    expect_err(
        "crowdsec:\n  url: http://h\n  api_key_fil: k\n",
        Some(3),
        "unknown field `api_key_fil`",
    );
    expect_err(
        "crowdsec:\n  url: http://h\n  api_key_file: k\n  machine:\n    id: a\n",
        Some(5),
        "crowdsec.machine: missing field `password_file`",
    );
}
