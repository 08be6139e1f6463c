//! The seed corpus of the `packet` and `packet_kernel` fuzz targets
//! (fuzz/seeds/packet/) is generated from the frame builder and the hostile
//! shapes; this test keeps the committed files equal to the generator.
//! Regenerate with `SIPGUARD_WRITE_SEEDS=1 cargo test --test fuzz_seeds`.
//! Each seed is one policy-selector byte (see fuzz/src/lib.rs) + a frame.

use std::{collections::BTreeMap, path::PathBuf};

use sipguard_tests::{
    frames::{ip6, v4, v6},
    hostile::{shapes, Source},
    sip,
};

fn slug(name: &str) -> String {
    let mut s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    while s.contains("--") {
        s = s.replace("--", "-");
    }
    s.trim_matches('-').to_string()
}

fn seeds() -> BTreeMap<String, Vec<u8>> {
    let t4 = Source::Trusted.v4();
    let u4 = Source::Untrusted.v4();
    let pbx = [100, 64, 0, 1];
    let inv = sip::invite("alice", "bob", "pbx.example", "Yealink SIP-T46S 66.86.0.15");
    let mut frames: Vec<(String, Vec<u8>)> = vec![
        (
            "trusted v4 INVITE".into(),
            v4(t4, pbx).udp(5060, 5060).payload(&inv).build(),
        ),
        (
            "svmap OPTIONS v4".into(),
            v4(u4, pbx)
                .udp(5060, 5060)
                .payload(sip::svmap_options())
                .build(),
        ),
        (
            "svmap OPTIONS v6".into(),
            v6(Source::Untrusted.v6(), ip6("2001:db8:f::1"))
                .udp(5060, 5060)
                .payload(sip::svmap_options())
                .build(),
        ),
        (
            "TCP INVITE".into(),
            v4(u4, pbx).tcp(40000, 5061).payload(&inv).build(),
        ),
        (
            "first fragment".into(),
            v4(u4, pbx)
                .udp(5060, 5060)
                .frag(0x2000)
                .payload(&inv)
                .build(),
        ),
        (
            "later fragment".into(),
            v4(u4, pbx).udp(5060, 5060).frag(185).payload(&inv).build(),
        ),
        (
            "DNS".into(),
            v4(u4, pbx).udp(5353, 53).payload([0u8; 12]).build(),
        ),
    ];
    for s in shapes(Source::Untrusted) {
        frames.push((s.name.to_string(), s.frame));
    }
    frames
        .into_iter()
        .enumerate()
        .map(|(i, (name, frame))| {
            // Spread the seeds over the four policies the targets judge by.
            let mut seed = vec![(i % 4) as u8];
            seed.extend(frame);
            (format!("{}.bin", slug(&name)), seed)
        })
        .collect()
}

#[test]
fn packet_seed_corpus_matches_generator() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds/packet");
    let want = seeds();
    if std::env::var_os("SIPGUARD_WRITE_SEEDS").is_some() {
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for (name, data) in &want {
            std::fs::write(dir.join(name), data).unwrap();
        }
        eprintln!("wrote {} seeds to {}", want.len(), dir.display());
        return;
    }
    let mut have = BTreeMap::new();
    for e in std::fs::read_dir(&dir)
        .expect("fuzz/seeds/packet exists (SIPGUARD_WRITE_SEEDS=1 creates it)")
    {
        let p = e.unwrap().path();
        have.insert(
            p.file_name().unwrap().to_string_lossy().into_owned(),
            std::fs::read(&p).unwrap(),
        );
    }
    let stale: Vec<_> = want
        .keys()
        .filter(|k| have.get(*k) != want.get(*k))
        .collect();
    let extra: Vec<_> = have.keys().filter(|k| !want.contains_key(*k)).collect();
    assert!(
        stale.is_empty() && extra.is_empty(),
        "fuzz/seeds/packet is out of date (missing or different: {stale:?}; extra: {extra:?}); \
         regenerate with SIPGUARD_WRITE_SEEDS=1 cargo test --test fuzz_seeds"
    );
}
