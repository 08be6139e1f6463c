//! Every kind of invalid config through the real binary: `sipguard check`
//! and `sipguard run` exit with code 2 and print exactly one line that
//! names the file, the line and the field. The files are in
//! tests/configs/invalid/ (they also seed the config fuzz target).

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

use sipguard_tests::{harness::netns::unique, sipguard_bin};

fn configs() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("configs")
}

/// (file in configs/invalid, line, what the message must say after
/// "line N: " — starting with the field wherever there is one).
const CASES: &[(&str, Option<usize>, &str)] = &[
    ("bad-address", Some(4), "trusted[1]: '300.1.2.3' is not an IPv4/IPv6 address or CIDR"),
    ("bad-prefix-length", Some(2), "blocked[0]: '2001:db8::/129' is not an IPv4/IPv6 address or CIDR"),
    ("cidr-host-bits", Some(2), "trusted[0]: '10.0.0.1/24' has host bits set (did you mean 10.0.0.0/24?)"),
    ("trusted-and-blocked", Some(5), "blocked: 192.0.2.7 overlaps trusted 192.0.2.0/24: a source cannot be both trusted and blocked"),
    ("trusted-and-blocked-v6", Some(2), "blocked: 2001:db8::/32 overlaps trusted 2001:db8:1::/48"),
    ("port-out-of-range", Some(1), "sip_ports[1]: port 70000 is out of range 1-65535"),
    ("port-zero", Some(2), "sip_ports[0]: port 0 is out of range 1-65535"),
    ("port-negative", Some(1), "sip_ports[0]: port -5060 is out of range 1-65535"),
    ("port-range-out-of-range", Some(1), "sip_ports[0]: port 70000 is out of range 1-65535"),
    ("port-range-reversed", Some(4), "sip_ports[1]: port range \"5090-5080\" is reversed (did you mean \"5080-5090\"?)"),
    ("port-not-a-number", Some(1), "sip_ports[0]: 'sip' is not a port number"),
    ("port-range-half", Some(1), "sip_ports[0]: '5060-' is not a port (5060) or a range"),
    ("sip-ports-empty", Some(1), "sip_ports: must list at least one port"),
    ("unknown-key", Some(2), "unknown field `trustd`, expected one of"),
    ("wrong-type-list", Some(1), "trusted: invalid type: string \"192.0.2.10\", expected a sequence"),
    ("wrong-type-scalar", Some(1), "mode: invalid type: sequence, expected one of `enforce`, `monitor`"),
    ("wrong-type-port", Some(1), "sip_ports[0]: invalid type: floating point `5060.5`, expected a port"),
    ("wrong-type-map", Some(1), "policy: invalid type: map, expected one of `drop`, `inspect`"),
    ("unknown-mode", Some(1), "mode: unknown value `loud`, expected one of `enforce`, `monitor`"),
    ("unknown-xdp-mode", Some(1), "xdp_mode: unknown value `fast`, expected one of `auto`, `native`, `skb`"),
    ("empty", None, "config file is empty"),
    ("comments-only", None, "config file is empty"),
    ("document-marker-only", None, "config file is empty"),
    ("list-without-value", Some(2), "trusted: has no value"),
    ("duplicate-interface", Some(4), "interfaces: interface 'eth0' is listed twice"),
    ("duplicate-interface-flow", Some(1), "interfaces: interface 'eth0' is listed twice"),
    ("duplicate-key", Some(3), "policy: is set twice"),
    ("interface-name-too-long", Some(1), "interfaces: 'averyveryverylongname0' is not a valid interface name"),
    ("yaml-unclosed-list", Some(2), "trusted: did not find expected ',' or ']'"),
    ("yaml-tab-indent", Some(3), "trusted: found character that cannot start any token"),
    ("not-a-mapping", Some(1), "expected settings as `key: value` lines"),
    ("not-utf8", Some(2), "the file is not UTF-8 text"),
    ("inspect-unknown-method", Some(5), "inspect: drop_methods: unknown SIP method 'FETCH'"),
    ("inspect-user-agent-too-long", Some(4), "inspect: user agent prefix 'friendly-scanner-with-a-much-too-long-name' must be 1-32 printable ASCII characters"),
    ("inspect-unknown-key", Some(3), "unknown field `sipvicous`, expected one of"),
];

fn sipguard(args: &[&str], file: &Path) -> Output {
    Command::new(sipguard_bin())
        .args(args)
        .arg("-c")
        .arg(file)
        // `run` must fail before touching the kernel; should a case ever be
        // accepted, the interface does not exist and the pin root is private.
        .args([
            "--pin-root",
            &format!("/sys/fs/bpf/sg-test-{}", unique("cfg")),
        ])
        .env_remove("RUST_LOG")
        .output()
        .expect("running sipguard")
}

/// Exit code 2, nothing on stdout, one line on stderr:
/// `sipguard: invalid config: FILE[: line N]: MESSAGE`.
fn assert_rejected(
    out: &Output,
    file: &Path,
    line: Option<usize>,
    needle: &str,
) -> Result<(), String> {
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    let want_prefix = match line {
        Some(l) => format!("sipguard: invalid config: {}: line {l}: ", file.display()),
        None => format!("sipguard: invalid config: {}: ", file.display()),
    };
    let problems = [
        (out.status.code() != Some(2))
            .then(|| format!("exit code {:?}, want 2", out.status.code())),
        (!out.stdout.is_empty())
            .then(|| format!("stdout not empty: {}", String::from_utf8_lossy(&out.stdout))),
        (lines.len() != 1).then(|| format!("{} lines on stderr, want 1", lines.len())),
        (!stderr.starts_with(&want_prefix))
            .then(|| format!("stderr does not start with '{want_prefix}'")),
        (!stderr.contains(needle)).then(|| format!("stderr does not contain '{needle}'")),
    ];
    let problems: Vec<String> = problems.into_iter().flatten().collect();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{}:\n    {}\n    stderr: {stderr}",
            file.display(),
            problems.join("\n    ")
        ))
    }
}

#[test]
fn every_invalid_config_exits_2_with_one_message() {
    let dir = configs().join("invalid");
    let mut failures = Vec::new();
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .expect("tests/configs/invalid")
        .map(|e| {
            e.expect("dir entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    files.sort();
    // Every file has a case and every case a file.
    for f in &files {
        let stem = f.trim_end_matches(".yaml");
        assert!(
            CASES.iter().any(|c| c.0 == stem),
            "{f} has no expected message in CASES"
        );
    }
    for (name, line, needle) in CASES {
        let file = dir.join(format!("{name}.yaml"));
        assert!(file.exists(), "{} is missing", file.display());
        for verb in [&["check"][..], &["run", "--iface", "sgnone0"][..]] {
            if let Err(e) = assert_rejected(&sipguard(verb, &file), &file, *line, needle) {
                failures.push(format!("sipguard {}: {e}", verb[0]));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    eprintln!("{} invalid configs rejected by check and run", CASES.len());
}

#[test]
fn missing_file_exits_2() {
    let file = PathBuf::from(format!("/nonexistent-{}/sipguard.yaml", unique("cfg")));
    for verb in [&["check"][..], &["run", "--iface", "sgnone0"][..]] {
        let out = sipguard(verb, &file);
        assert_rejected(
            &out,
            &file,
            None,
            "cannot read config file: No such file or directory",
        )
        .unwrap();
    }
}

#[test]
fn directory_instead_of_file_exits_2() {
    let dir = configs().join("invalid");
    let out = sipguard(&["check"], &dir);
    assert_rejected(&out, &dir, None, "cannot read config file: Is a directory").unwrap();
}

#[test]
fn unreadable_file_exits_2() {
    // Root reads any file, so the unreadable case runs the binary as nobody.
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("*** SKIPPED unreadable_file_exits_2: needs root to switch to nobody ***");
        return;
    }
    let dir = std::env::temp_dir().join(unique("cfg"));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("secret.yaml");
    std::fs::copy(configs().join("valid/readme-example.yaml"), &file).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = Command::new("setpriv")
        .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"])
        .arg(sipguard_bin())
        .arg("check")
        .arg("-c")
        .arg(&file)
        .env_remove("RUST_LOG")
        .output()
        .expect("running setpriv");
    let _ = std::fs::remove_dir_all(&dir);
    assert_rejected(
        &out,
        &file,
        None,
        "cannot read config file: Permission denied",
    )
    .unwrap();
}

#[test]
fn valid_examples_pass_check() {
    let dir = configs().join("valid");
    for e in std::fs::read_dir(&dir).expect("tests/configs/valid") {
        let file = e.unwrap().path();
        let out = Command::new(sipguard_bin())
            .arg("check")
            .arg("-c")
            .arg(&file)
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}: {}",
            file.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("valid"),
            "{}",
            file.display()
        );
    }
    // The README's example is one of them, verbatim.
    let readme =
        std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
            .unwrap();
    let example = std::fs::read_to_string(dir.join("readme-example.yaml")).unwrap();
    assert!(
        readme.contains(&example),
        "README's example config differs from tests/configs/valid/readme-example.yaml"
    );
}
