//! `sipguard replay` on captures this test makes itself: the real
//! SIPVicious tools (svmap, svwar, svcrack) and SIPp run in network
//! namespaces created here, tcpdump records them, and the replay of each
//! capture through the real program with the default rules must drop every
//! scanner packet and pass every SIPp packet. Needs root, tcpdump, sipp and
//! the sipvicious Python package (scripts/setup.sh --tests installs them).

use std::{
    io::{BufRead, BufReader},
    net::UdpSocket,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use sipguard::policy::config::EMBEDDED_DEFAULT;
use sipguard_tests::{
    addresses::{OTHER4, PBX4 as TARGET, SCANNER4 as SCANNER},
    harness::{daemon::scratch, netns::unique, process::run_ok, Netns, Proc, Wan},
    require_root, sipguard_bin,
};

/// The scanner on the WAN side, the target where sipguard would run; no
/// daemon: the captures are replayed offline.
struct Lab {
    net: Wan,
    dir: PathBuf,
}

impl Lab {
    fn new() -> Lab {
        Lab {
            net: Wan::new(),
            dir: scratch("replay"),
        }
    }

    /// tcpdump in the target namespace, returned once it is listening.
    fn capture(&self, iface: &str, filter: &str, file: &Path) -> Proc {
        let mut child = self
            .net
            .pbx
            .command("tcpdump")
            .args(["-U", "-n", "-i", iface, "-w"])
            .arg(file)
            .args(filter.split(' '))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting tcpdump (apt-get install tcpdump)");
        let err = child.stderr.take().unwrap();
        let mut lines = BufReader::new(err).lines();
        loop {
            match lines.next() {
                Some(Ok(l)) if l.contains("listening on") => break,
                Some(Ok(_)) => continue,
                other => panic!("tcpdump did not start: {other:?}"),
            }
        }
        // Keep draining stderr so tcpdump never blocks on it.
        std::thread::spawn(move || for _ in lines {});
        Proc::adopt("tcpdump", child)
    }

    fn stop_capture(&self, mut p: Proc) {
        std::thread::sleep(Duration::from_millis(300));
        p.stop(libc::SIGTERM, Duration::from_secs(10));
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A minimal registrar/UAS so the scanners go on past their first probe:
/// REGISTER gets a digest challenge (svcrack then tries passwords), every
/// other request 404 (svwar enumerates).
fn responder(ns: &Netns, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    ns.spawn(move || {
        let sock = UdpSocket::bind(format!("{TARGET}:5060")).expect("bind responder");
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let mut buf = [0u8; 4096];
        while !stop.load(Ordering::Relaxed) {
            let Ok((n, from)) = sock.recv_from(&mut buf) else {
                continue;
            };
            let req = String::from_utf8_lossy(&buf[..n]).to_string();
            let keep: Vec<&str> = req
                .lines()
                .filter(|l| {
                    let l = l.to_ascii_lowercase();
                    ["via:", "from:", "to:", "call-id:", "cseq:"]
                        .iter()
                        .any(|h| l.starts_with(h))
                })
                .collect();
            let status = if req.starts_with("REGISTER") {
                "401 Unauthorized\r\nWWW-Authenticate: Digest realm=\"lab\", nonce=\"6d3f2a\", algorithm=MD5"
            } else {
                "404 Not Found"
            };
            let resp = format!(
                "SIP/2.0 {status}\r\n{}\r\nContent-Length: 0\r\n\r\n",
                keep.join("\r\n")
            );
            let _ = sock.send_to(resp.as_bytes(), from);
        }
    })
}

fn sipvicious(ns: &Netns, tool: &str, args: &[&str]) {
    let code =
        format!("import sys; from sipvicious.{tool} import main; sys.argv[0] = '{tool}'; main()");
    let out = ns
        .command("timeout")
        .args(["60", "python3", "-c", &code])
        .args(args)
        .output()
        .expect("running python3 (pip install sipvicious)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("ModuleNotFoundError"),
        "sipvicious is not installed: {stderr}"
    );
    eprintln!(
        "{tool} {}: {}",
        args.join(" "),
        stderr.lines().last().unwrap_or("")
    );
}

#[derive(Debug)]
struct Line {
    index: u64,
    verdict: String,
    reason: String,
    engine: String,
}

fn replay(config: Option<&Path>, capture: &Path) -> Vec<Line> {
    let mut cmd = Command::new(sipguard_bin());
    cmd.arg("replay").arg("--json");
    if let Some(c) = config {
        cmd.arg("-c").arg(c);
    }
    let out = cmd.arg(capture).output().expect("running sipguard replay");
    assert!(
        out.status.success(),
        "sipguard replay failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("one JSON object per line");
            Line {
                index: v["index"].as_u64().expect("index"),
                verdict: v["verdict"].as_str().expect("verdict").to_string(),
                reason: v["reason"].as_str().expect("reason").to_string(),
                engine: v["engine"].as_str().expect("engine").to_string(),
            }
        })
        .collect()
}

fn packets_in(capture: &Path) -> usize {
    let out = Command::new("tcpdump")
        .arg("-nr")
        .arg(capture)
        .output()
        .expect("tcpdump -r");
    String::from_utf8_lossy(&out.stdout).lines().count()
}

/// Rewrites a pcap as pcapng (one interface, same link type and packets).
fn to_pcapng(pcap: &Path, out: &Path) {
    use pcap_file::{
        pcap::PcapReader,
        pcapng::{
            blocks::enhanced_packet::EnhancedPacketBlock,
            blocks::interface_description::InterfaceDescriptionBlock, PcapNgWriter,
        },
    };
    let mut r = PcapReader::new(std::fs::File::open(pcap).unwrap()).unwrap();
    let link = r.header().datalink;
    let mut w = PcapNgWriter::new(std::fs::File::create(out).unwrap()).unwrap();
    w.write_pcapng_block(InterfaceDescriptionBlock {
        linktype: link,
        snaplen: 0xffff,
        options: vec![],
    })
    .unwrap();
    while let Some(p) = r.next_packet() {
        let p = p.unwrap();
        let epb = EnhancedPacketBlock {
            interface_id: 0,
            timestamp: p.timestamp,
            original_len: p.orig_len,
            data: p.data,
            options: vec![],
        };
        w.write_pcapng_block(epb).unwrap();
    }
}

#[test]
fn scanners_are_dropped_and_sipp_calls_pass() {
    if !require_root("scanners_are_dropped_and_sipp_calls_pass") {
        return;
    }
    let lab = Lab::new();
    let default_cfg = lab.dir.join("default.yaml");
    std::fs::write(&default_cfg, EMBEDDED_DEFAULT).unwrap();

    // 1. The SIPVicious tools against a responder, Ethernet capture of
    //    everything the scanner sends to the SIP port.
    let scan = lab.dir.join("scan.pcap");
    let stop = Arc::new(AtomicBool::new(false));
    let resp = responder(&lab.net.pbx, stop.clone());
    let cap = lab.capture(
        &lab.net.pbx_if,
        &format!("udp and dst port 5060 and src host {SCANNER}"),
        &scan,
    );
    let target = TARGET.to_string();
    sipvicious(&lab.net.wan, "svmap", &[&target, "-p", "5060"]);
    sipvicious(&lab.net.wan, "svwar", &["-e100-110", &target]);
    sipvicious(
        &lab.net.wan,
        "svwar",
        &["-e200-205", "-m", "INVITE", &target],
    );
    sipvicious(&lab.net.wan, "svcrack", &["-u100", "-r1-15", &target]);
    lab.stop_capture(cap);
    stop.store(true, Ordering::Relaxed);
    resp.join().unwrap();

    let captured = packets_in(&scan);
    let lines = replay(Some(&default_cfg), &scan);
    assert_eq!(lines.len(), captured, "one verdict per captured packet");
    assert!(captured >= 20, "the scanners sent only {captured} packets");
    for (i, l) in lines.iter().enumerate() {
        assert_eq!(l.index, i as u64, "indexes are 0-based in file order");
    }
    let passed: Vec<&Line> = lines.iter().filter(|l| l.verdict != "drop").collect();
    assert!(
        passed.is_empty(),
        "{} of {captured} scanner packets got through: {passed:?}",
        passed.len()
    );
    assert!(
        lines
            .iter()
            .all(|l| l.reason == "user_agent" || l.reason == "sipvicious"),
        "{lines:?}"
    );
    eprintln!("scanners: {captured} packets, all dropped");

    // Without the scanner rules the same capture passes: the verdicts come
    // from the config, not from the capture.
    let off = lab.dir.join("off.yaml");
    std::fs::write(
        &off,
        "policy: inspect\ninspect:\n  user_agents: []\n  sipvicious: false\n",
    )
    .unwrap();
    assert!(replay(Some(&off), &scan)
        .iter()
        .all(|l| l.verdict == "pass"));

    // 2. SIPp calls (INVITE, 180, 200, ACK, BYE, 200), Linux cooked (SLL2)
    //    capture on "any", both directions.
    let calls = lab.dir.join("sipp.pcap");
    let cap = lab.capture("any", "udp", &calls);
    let uas = Proc::adopt(
        "sipp uas",
        lab.net
            .pbx
            .command("sipp")
            .args([
                "-sn", "uas", "-i", &target, "-p", "5060", "-m", "5", "-nostdin",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting sipp (apt-get install sip-tester)"),
    );
    std::thread::sleep(Duration::from_millis(500));
    let scanner = SCANNER.to_string();
    run_ok(
        lab.net
            .wan
            .command("timeout")
            .args([
                "30", "sipp", "-sn", "uac", "-i", &scanner, "-p", "5070", "-m", "5", "-r", "20",
                "-nostdin",
            ])
            .arg(format!("{TARGET}:5060")),
    );
    drop(uas);
    lab.stop_capture(cap);

    let captured = packets_in(&calls);
    let lines = replay(Some(&default_cfg), &calls);
    assert_eq!(lines.len(), captured);
    assert!(captured >= 30, "SIPp exchanged only {captured} packets");
    let dropped: Vec<&Line> = lines.iter().filter(|l| l.verdict != "pass").collect();
    assert!(dropped.is_empty(), "false positives on SIPp: {dropped:?}");
    let inspected = lines
        .iter()
        .filter(|l| l.reason == "inspected_clean")
        .count();
    assert!(
        inspected >= 15,
        "only {inspected} SIPp requests were inspected: {lines:?}"
    );
    eprintln!("SIPp: {captured} packets, 0 dropped, {inspected} requests inspected");

    // 3. The same capture as pcapng gives the same verdicts.
    let ng = lab.dir.join("sipp.pcapng");
    to_pcapng(&calls, &ng);
    let ng_lines = replay(Some(&default_cfg), &ng);
    assert_eq!(ng_lines.len(), lines.len());
    for (a, b) in lines.iter().zip(&ng_lines) {
        assert_eq!((&a.verdict, &a.reason), (&b.verdict, &b.reason));
    }
}

#[test]
fn replay_errors_are_clear() {
    if !require_root("replay_errors_are_clear") {
        return;
    }
    let dir = std::env::temp_dir().join(unique("replay-err"));
    std::fs::create_dir_all(&dir).unwrap();
    let garbage = dir.join("garbage.pcap");
    std::fs::write(&garbage, b"this is not a capture at all").unwrap();
    for (path, needle) in [
        (dir.join("missing.pcap"), "cannot open capture"),
        (garbage, "not a pcap or pcapng file"),
    ] {
        let out = Command::new(sipguard_bin())
            .arg("replay")
            .arg(&path)
            .output()
            .unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{err}");
    }
    let bad_cfg = dir.join("bad.yaml");
    std::fs::write(&bad_cfg, "inspect:\n  drop_methods: [FOO]\n").unwrap();
    let out = Command::new(sipguard_bin())
        .args(["replay", "-c"])
        .arg(&bad_cfg)
        .arg("/dev/null")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "an invalid config exits 2");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A UDP frame to the SIP port of exactly `len` bytes: `head` (a request
/// whose header block ends early), then a body of `x`s.
fn sip_frame_of_len(src: std::net::Ipv4Addr, ua: &str, len: usize) -> Vec<u8> {
    let head = |body: &str| {
        sipguard_tests::sip::request(
            "INVITE",
            "sip:100@192.0.2.1",
            &sipguard_tests::sip::call_headers("100", "100", ua),
            body,
            "\r\n",
        )
    };
    let frame = |payload: Vec<u8>| {
        sipguard_tests::frames::v4(src.octets(), TARGET.octets())
            .udp(5062, 5060)
            .payload(payload)
            .build()
    };
    let bare = frame(head("")).len();
    let f = frame(head(&"x".repeat(len - bare)));
    assert_eq!(f.len(), len);
    f
}

#[test]
fn every_frame_gets_a_verdict_and_names_its_engine() {
    if !require_root("every_frame_gets_a_verdict_and_names_its_engine") {
        return;
    }
    let dir = scratch("replay-sizes");
    let cfg = dir.join("default.yaml");
    std::fs::write(&cfg, EMBEDDED_DEFAULT).unwrap();
    let scanner_options = sipguard_tests::frames::v4(SCANNER.octets(), TARGET.octets())
        .udp(5062, 5060)
        .payload(sipguard_tests::sip::svmap_options())
        .build();
    let cut = sip_frame_of_len(OTHER4, "Yealink SIP-T46S 66.86.0.15", 600);
    // (bytes in the capture, length on the wire)
    let packets: Vec<(Vec<u8>, usize)> = vec![
        (vec![0xffu8; 10], 10),
        (scanner_options.clone(), scanner_options.len()),
        (sip_frame_of_len(SCANNER, "friendly-scanner", 4000), 4000),
        (
            sip_frame_of_len(OTHER4, "Yealink SIP-T46S 66.86.0.15", 4000),
            4000,
        ),
        (
            sip_frame_of_len(OTHER4, "Yealink SIP-T46S 66.86.0.15", 9000),
            9000,
        ),
        (sip_frame_of_len(SCANNER, "friendly-scanner", 9000), 9000),
        // Cut by the capture's snap length: judged on the bytes there are.
        (cut[..100].to_vec(), 600),
    ];
    let pcap = dir.join("sizes.pcap");
    let mut w = pcap_file::pcap::PcapWriter::new(std::fs::File::create(&pcap).unwrap()).unwrap();
    for (data, wire) in &packets {
        w.write_packet(&pcap_file::pcap::PcapPacket::new(
            Duration::from_secs(1),
            *wire as u32,
            data,
        ))
        .unwrap();
    }
    drop(w);
    // Frames above a single buffer go through the multi-buffer build
    // where the kernel has it (5.18+), else through the host evaluator.
    let multi_buffer = sipguard::kernel::features::has_multi_buffer();
    let large = |verdict: &'static str, reason: &str, n: usize| {
        if multi_buffer {
            (verdict, reason.to_string(), "kernel")
        } else {
            (
                verdict,
                format!(
                    "{reason} ({n} bytes: a single-buffer test run takes at most 3520, and this \
                     kernel has no multi-buffer XDP (Linux 5.18+); judged by the host evaluator, \
                     the same code)"
                ),
                "host",
            )
        }
    };
    let want: Vec<(&str, String, &str)> = vec![
        (
            "drop",
            "runt: 10 bytes, shorter than the 14-byte link header; the NIC discards such a \
             frame before XDP runs"
                .into(),
            "link",
        ),
        ("drop", "user_agent".into(), "kernel"),
        large("drop", "user_agent", 4000),
        large("pass", "inspected_clean", 4000),
        large("pass", "inspected_clean", 9000),
        large("drop", "user_agent", 9000),
        (
            "drop",
            "malformed [capture cut it: 100 of 600 bytes judged]".into(),
            "kernel",
        ),
    ];
    let got: Vec<(String, String, String)> = replay(Some(&cfg), &pcap)
        .into_iter()
        .map(|l| (l.verdict, l.reason, l.engine))
        .collect();
    let want: Vec<(String, String, String)> = want
        .into_iter()
        .map(|(v, r, e)| (v.to_string(), r, e.to_string()))
        .collect();
    assert_eq!(got, want);

    // The text output shows the engine too, and the summary counts them.
    let out = Command::new(sipguard_bin())
        .args(["replay", "-c"])
        .arg(&cfg)
        .arg(&pcap)
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let engines: Vec<&str> = text
        .lines()
        .take(packets.len())
        .map(|l| l.split_whitespace().nth(2).unwrap_or(""))
        .collect();
    let (large_engine, decided) = if multi_buffer {
        ("kernel", "kernel 6, link 1")
    } else {
        ("host", "kernel 2, host 4, link 1")
    };
    assert_eq!(
        engines,
        [
            "link",
            "kernel",
            large_engine,
            large_engine,
            large_engine,
            large_engine,
            "kernel"
        ],
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "7 packets: 2 passed, 5 dropped\n  decided by: {decided}\n"
        )),
        "{text}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
