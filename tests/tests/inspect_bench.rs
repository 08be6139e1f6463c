//! Cost of the SIP inspector, measured in the kernel with
//! BPF_PROG_TEST_RUN (1M repeats), each figure next to the empty XDP
//! program measured in the same run. Not part of the normal suite (it is a
//! measurement, and the machine is shared); run it with
//! `cargo test -p sipguard-tests --test inspect_bench -- --ignored --nocapture`.

use sipguard::{
    kernel::testrun::Sandbox,
    policy::{config::Config, Policy},
};
use sipguard_tests::{frames::v4, require_root, sip};

const REPEAT: u32 = 1_000_000;

fn frame(payload: &[u8]) -> Vec<u8> {
    v4([198, 51, 100, 7], [100, 64, 0, 1])
        .udp(5060, 5060)
        .payload(payload)
        .build()
}

/// An INVITE whose frame is exactly `len` bytes, User-Agent last.
fn invite_of_len(len: usize) -> Vec<u8> {
    let build = |pad: usize, extra: usize| {
        let mut h: Vec<(String, String)> = vec![
            (
                "Via".into(),
                "SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-524287-1;rport".into(),
            ),
            ("Max-Forwards".into(), "70".into()),
            (
                "From".into(),
                "\"Alice\" <sip:alice@pbx.example>;tag=4a5b6c".into(),
            ),
            ("To".into(), "<sip:bob@pbx.example>".into()),
            (
                "Call-ID".into(),
                format!("a84b4c76e66710{}@192.0.2.10", "0".repeat(extra)),
            ),
            ("CSeq".into(), "1 INVITE".into()),
            ("Contact".into(), "<sip:alice@192.0.2.10:5060>".into()),
            ("Content-Length".into(), "0".into()),
        ];
        // Record-Route lines of at most ~150 bytes, as proxies add them.
        let lines = pad.div_ceil(120);
        for i in 0..lines {
            let n = pad / lines + usize::from(i < pad % lines);
            h.insert(
                1,
                (
                    "Record-Route".into(),
                    format!("<sip:{}.proxy.example;lr>", "r".repeat(n)),
                ),
            );
        }
        h.push(("User-Agent".into(), "Yealink SIP-T46S 66.86.0.15".into()));
        let hv: Vec<(&str, &str)> = h.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        frame(&sip::request(
            "INVITE",
            "sip:bob@pbx.example",
            &hv,
            "",
            "\r\n",
        ))
    };
    let base = build(0, 0).len();
    assert!(base <= len, "base INVITE is {base} bytes");
    // The largest pad that fits, then the Call-ID takes up the rest.
    let pad = (0..len)
        .take_while(|p| build(*p, 0).len() <= len)
        .last()
        .unwrap_or(0);
    let f = build(pad, len - build(pad, 0).len());
    assert_eq!(f.len(), len);
    f
}

#[test]
#[ignore]
fn inspector_cost() {
    if !require_root("inspector_cost") {
        return;
    }
    let policy = Policy::from_config(&Config::embedded_default().expect("embedded default"));
    let mut sb = Sandbox::production(&policy).expect("load");
    let cases = [
        ("legit INVITE, 400 B", invite_of_len(400)),
        ("svmap OPTIONS", frame(&sip::svmap_options())),
        ("INVITE, 1400 B, UA last", invite_of_len(1400)),
        // Where the time goes: fixed cost, request line, headers.
        ("CRLF keepalive", frame(b"\r\n\r\n")),
        (
            "bare request line",
            frame(b"INVITE sip:bob@pbx.example SIP/2.0\r\n\r\n"),
        ),
        (
            "TCP (not inspected)",
            v4([198, 51, 100, 7], [100, 64, 0, 1])
                .tcp(5060, 5060)
                .payload(b"x")
                .build(),
        ),
    ];
    let mut check = Sandbox::new(&policy).expect("load");
    println!(
        "verifier: {} instructions processed",
        sb.verified_instructions().unwrap().unwrap_or(0)
    );
    println!(
        "{:<26} {:>6} {:>10} {:>10} {:>7}  verdict",
        "frame", "bytes", "ns/pkt", "empty ns", "ratio"
    );
    for (name, f) in &cases {
        let t = sb.time(f, REPEAT).unwrap().as_nanos() as f64;
        let e = sb.time_empty(f, REPEAT).unwrap().as_nanos() as f64;
        let v = check.run(f).unwrap();
        println!(
            "{name:<26} {:>6} {t:>10.0} {e:>10.0} {:>7.1}  {}",
            f.len(),
            t / e.max(1.0),
            v.reason.name()
        );
    }
}
