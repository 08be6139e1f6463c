//! Arbitrary text through the config loader: it returns a config or an
//! error with a message, never panics; an accepted config compiles into a
//! policy that keeps the loader's promises.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sipguard::policy::{config::Config, Policy};

/// Lines as YAML counts them: CR, LF, CRLF, NEL, LS and PS end a line.
fn yaml_lines(text: &str) -> usize {
    let unified = text
        .replace("\r\n", "\n")
        .replace(['\r', '\u{85}', '\u{2028}', '\u{2029}'], "\n");
    unified.split('\n').count()
}

fuzz_target!(|data: &[u8]| {
    // Config::load refuses non-UTF-8 files before parsing.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Config::parse(text, "fuzz.yaml") {
        Err(e) => {
            assert!(!e.message.trim().is_empty(), "error without a message");
            if let Some(line) = e.line {
                assert!(
                    line >= 1 && line <= yaml_lines(text) + 1,
                    "line {line} outside the text: {e}"
                );
            }
        }
        Ok(cfg) => {
            assert!(!cfg.sip_ports.is_empty());
            for r in &cfg.sip_ports {
                assert!(r.first >= 1 && r.first <= r.last, "bad range {r}");
            }
            for t in cfg.trusted_nets() {
                for b in &cfg.blocked {
                    assert!(
                        !t.0.contains(&b.0) && !b.0.contains(&t.0),
                        "{t} and {b} overlap"
                    );
                }
            }
            let policy = Policy::from_config(&cfg);
            for r in &cfg.sip_ports {
                assert!(
                    policy.settings.is_sip_port(r.first) && policy.settings.is_sip_port(r.last)
                );
            }
            let _ = policy.describe(&cfg);
        }
    }
});
