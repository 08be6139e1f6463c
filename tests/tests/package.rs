//! The Debian package, as an admin gets it: built by `cargo xtask package`,
//! checked by lintian, installed with apt into a freshly booted Debian 12
//! whose PID 1 is systemd (systemd-nspawn, tests/src/os.rs), and driven
//! only through systemctl, the config file and apt. Needs root,
//! debootstrap, systemd-nspawn and cargo-deb (scripts/setup.sh --tests);
//! SIPGUARD_DEB=path tests an existing package instead of building one.

use std::{
    net::UdpSocket,
    path::{Path, PathBuf},
    process::Command,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex, OnceLock,
    },
    time::{Duration, Instant},
};

use sipguard_tests::{
    addresses::{PBX4, PROVIDER4, SCANNER4, WAN4_PREFIX},
    harness::{
        netns::{self, Netns},
        process::run_ok,
    },
    os::{self, Os},
    require_root, sip,
};

fn tools_present(test: &str, tools: &[&str]) -> bool {
    let missing: Vec<&str> = tools.iter().copied().filter(|t| !os::have(t)).collect();
    if missing.is_empty() {
        return true;
    }
    eprintln!(
        "\n*** SKIPPED {test}: missing {} (scripts/setup.sh --tests installs them) ***\n",
        missing.join(", ")
    );
    false
}

/// `cargo xtask package ARGS`: the .deb and tarball it wrote. One build at
/// a time: they share target/package/generated.
fn build_package(args: &[&str]) -> (PathBuf, PathBuf) {
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    let _guard = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let t0 = Instant::now();
    let out = run_ok(
        Command::new(cargo)
            .current_dir(&root)
            .args(["xtask", "package"])
            .args(args),
    );
    eprintln!("cargo xtask package {args:?}: {:.1?}", t0.elapsed());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let find = |ext: &str| {
        stdout
            .lines()
            .find(|l| l.ends_with(ext))
            .map(PathBuf::from)
            .unwrap_or_else(|| panic!("xtask package prints no {ext} path:\n{stdout}"))
    };
    (find(".deb"), find(".tar.gz"))
}

/// The package under test, built once per test process.
fn deb() -> PathBuf {
    static DEB: OnceLock<PathBuf> = OnceLock::new();
    DEB.get_or_init(|| match std::env::var_os("SIPGUARD_DEB") {
        Some(p) => PathBuf::from(p),
        None => build_package(&[]).0,
    })
    .clone()
}

/// `(ELF class, e_machine)` of an ELF file's header.
fn elf_machine(bytes: &[u8]) -> (u8, u16) {
    assert!(
        bytes.len() > 20 && &bytes[..4] == b"\x7fELF",
        "not an ELF file"
    );
    (bytes[4], u16::from_le_bytes([bytes[18], bytes[19]]))
}

#[test]
fn the_arm64_package_holds_an_arm64_binary() {
    if !tools_present(
        "the_arm64_package_holds_an_arm64_binary",
        &["cargo-deb", "aarch64-linux-gnu-gcc"],
    ) {
        return;
    }
    let (deb, tarball) = build_package(&["--arch", "arm64"]);
    let field = |f: &str| {
        let o = Command::new("dpkg-deb")
            .arg("-f")
            .arg(&deb)
            .arg(f)
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    };
    assert_eq!(field("Architecture"), "arm64");
    assert!(
        deb.to_string_lossy().ends_with("_arm64.deb"),
        "{}",
        deb.display()
    );
    let dir = std::env::temp_dir().join(netns::unique("arm64"));
    std::fs::create_dir_all(&dir).unwrap();
    let ok = Command::new("dpkg-deb")
        .arg("-x")
        .arg(&deb)
        .arg(&dir)
        .status()
        .unwrap();
    assert!(ok.success());
    let bin = std::fs::read(dir.join("usr/bin/sipguard")).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    // ELFCLASS64, EM_AARCH64.
    assert_eq!(
        elf_machine(&bin),
        (2, 183),
        "the arm64 package's binary is not aarch64"
    );
    assert!(
        tarball.exists()
            && tarball
                .to_string_lossy()
                .contains("aarch64-unknown-linux-gnu")
    );
}

fn tools_for_package() -> Vec<&'static str> {
    if std::env::var_os("SIPGUARD_DEB").is_some() {
        vec![]
    } else {
        vec!["cargo-deb"]
    }
}

#[test]
fn lintian_finds_no_errors_in_the_package() {
    let mut tools = tools_for_package();
    tools.push("lintian");
    if !tools_present("lintian_finds_no_errors_in_the_package", &tools) {
        return;
    }
    let deb = deb();
    let out = Command::new("lintian")
        .arg(&deb)
        .output()
        .expect("running lintian");
    let text = String::from_utf8_lossy(&out.stdout);
    eprintln!("lintian {}:\n{text}", deb.display());
    let errors: Vec<&str> = text.lines().filter(|l| l.starts_with("E:")).collect();
    assert!(errors.is_empty(), "lintian errors:\n{}", errors.join("\n"));
    // lintian exits non-zero for errors only; anything else is its failure.
    assert!(
        out.status.success(),
        "lintian failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A thread that repeats its body until stopped or dropped.
struct Background {
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Background {
    fn start(mut body: impl FnMut() + Send + 'static) -> Background {
        let stop = Arc::new(AtomicBool::new(false));
        let s2 = stop.clone();
        let handle = std::thread::spawn(move || {
            while !s2.load(Ordering::Relaxed) {
                body();
            }
        });
        Background {
            stop,
            handle: Some(handle),
        }
    }

    /// Stops the thread and waits for it; `None` if it was stopped before.
    fn halt(&mut self) -> Option<std::thread::Result<()>> {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.take().map(|h| h.join())
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.halt();
    }
}

/// The INVITE the phone sends.
fn phone_invite() -> Vec<u8> {
    sip::invite(
        "alice",
        "bob",
        &PBX4.to_string(),
        "Yealink SIP-T46S 66.86.0.15",
    )
}

/// Datagrams from fixed sources towards the container's WAN address.
struct Stream {
    sent: Arc<[AtomicU64; 2]>,
    thread: Background,
}

impl Stream {
    /// One scanner probe and one phone's INVITE every `gap`, until stopped.
    fn start(scanner: UdpSocket, phone: UdpSocket, gap: Duration) -> Stream {
        let sent: Arc<[AtomicU64; 2]> = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
        let c2 = sent.clone();
        let to = format!("{PBX4}:5060");
        let probe = sip::svmap_options();
        let invite = phone_invite();
        let thread = Background::start(move || {
            scanner.send_to(&probe, &to).unwrap();
            c2[0].fetch_add(1, Ordering::Relaxed);
            phone.send_to(&invite, &to).unwrap();
            c2[1].fetch_add(1, Ordering::Relaxed);
            std::thread::sleep(gap);
        });
        Stream { sent, thread }
    }

    /// (scanner, phone) datagrams sent.
    fn stop(mut self) -> (u64, u64) {
        if let Some(Err(panic)) = self.thread.halt() {
            std::panic::resume_unwind(panic);
        }
        (
            self.sent[0].load(Ordering::Relaxed),
            self.sent[1].load(Ordering::Relaxed),
        )
    }
}

/// Counts datagrams per source arriving at a UDP port inside the container
/// (after XDP: what the filter let through).
struct Counter {
    counts: Arc<[AtomicU64; 2]>,
    _thread: Background,
}

impl Counter {
    fn start(ns: &Netns) -> Counter {
        let sock = ns.run(|| UdpSocket::bind(("0.0.0.0", 5060)).unwrap());
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let counts: Arc<[AtomicU64; 2]> = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
        let c2 = counts.clone();
        let mut buf = [0u8; 2048];
        let thread = Background::start(move || {
            if let Ok((_, from)) = sock.recv_from(&mut buf) {
                let ip = from.ip();
                if ip == SCANNER4 {
                    c2[0].fetch_add(1, Ordering::Relaxed);
                } else if ip == PROVIDER4 {
                    c2[1].fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        Counter {
            counts,
            _thread: thread,
        }
    }

    /// (scanner, phone) datagrams received so far.
    fn get(&self) -> (u64, u64) {
        (
            self.counts[0].load(Ordering::Relaxed),
            self.counts[1].load(Ordering::Relaxed),
        )
    }

    /// Waits until the phone's count reaches `phone` (the path is drained),
    /// then returns both counts.
    fn settle(&self, phone: u64) -> (u64, u64) {
        let t0 = Instant::now();
        while self.get().1 < phone && t0.elapsed() < Duration::from_secs(3) {
            std::thread::sleep(Duration::from_millis(10));
        }
        std::thread::sleep(Duration::from_millis(100));
        self.get()
    }
}

struct Unit {
    active: String,
    sub: String,
    status: String,
    pid: u32,
}

fn unit(os: &Os) -> Unit {
    let out = os.sh_ok(
        "systemctl show -p ActiveState -p SubState -p StatusText -p MainPID sipguard.service",
    );
    let get = |k: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .unwrap_or("")
            .to_string()
    };
    Unit {
        active: get("ActiveState"),
        sub: get("SubState"),
        status: get("StatusText"),
        pid: get("MainPID").parse().unwrap_or(0),
    }
}

fn journal(os: &Os) -> String {
    os.sh_ok("journalctl -u sipguard.service --no-pager -o cat")
}

fn wait_journal(os: &Os, needle: &str, times: usize) {
    let t0 = Instant::now();
    while journal(os).matches(needle).count() < times {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "no '{needle}' (x{times}) in the journal after 30 s:\n{}",
            journal(os)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Runs `sed -i SCRIPT` over the installed config, then `systemctl reload`.
fn edit_config_and_reload(os: &Os, script: &str) {
    os.sh_ok(&format!(
        "sed -i '{script}' /etc/sipguard/sipguard.yaml && systemctl reload sipguard"
    ));
}

fn xdp_attached(os: &Os, iface: &str) -> bool {
    os.sh_ok(&format!("ip link show dev {iface}"))
        .contains("prog/xdp")
}

fn send(sock: &UdpSocket, payload: &[u8], n: u64) {
    for _ in 0..n {
        sock.send_to(payload, format!("{PBX4}:5060")).unwrap();
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn step(name: &str, t0: &mut Instant) {
    eprintln!("  {name}: {:.2?}", t0.elapsed());
    *t0 = Instant::now();
}

/// Only CAP_NET_ADMIN (12), CAP_PERFMON (38) and CAP_BPF (39).
const UNIT_CAPS: u64 = (1 << 12) | (1 << 38) | (1 << 39);

#[test]
fn the_package_under_systemd_installs_idle_filters_reloads_restarts_without_a_gap_and_purges_clean()
{
    const NAME: &str = "the_package_under_systemd_installs_idle_filters_reloads_restarts_without_a_gap_and_purges_clean";
    if !require_root(NAME) {
        return;
    }
    let mut tools = tools_for_package();
    tools.extend(["debootstrap", "systemd-nspawn", "nsenter"]);
    if !tools_present(NAME, &tools) {
        return;
    }
    let deb = deb();
    let rootfs = os::rootfs();
    let share = deb.parent().unwrap_or(Path::new("/"));
    let file = deb.file_name().unwrap().to_string_lossy().to_string();
    let os = Os::boot(&rootfs, share);
    eprintln!("  boot to `running`: {:.2?}", os.boot_time);
    let mut t = Instant::now();

    // Installed: enabled, started, idle; nothing attached anywhere.
    let wan_ns = os.netns();
    let sender = Netns::new("ps");
    let wan = netns::unique("w");
    let peer = netns::unique("p");
    netns::veth(&wan_ns, &wan, &sender, &peer);
    wan_ns.add_addr(&wan, PBX4, WAN4_PREFIX);
    for a in [SCANNER4, PROVIDER4] {
        sender.add_addr(&peer, a, WAN4_PREFIX);
    }
    os.sh_ok(&format!("apt-get install -y /mnt/share/{file}"));
    step("apt install", &mut t);
    let u = unit(&os);
    assert_eq!(
        (u.active.as_str(), u.status.as_str()),
        ("active", "idle: no interface configured"),
        "after install the service runs idle:\n{}",
        journal(&os)
    );
    assert!(journal(&os).contains("no interface configured in /etc/sipguard/sipguard.yaml"));
    assert!(!xdp_attached(&os, &wan));
    assert!(!os.bpffs.join("sipguard").exists(), "nothing pinned");

    let counter = Counter::start(&wan_ns);
    let scanner = sender.run(|| UdpSocket::bind((SCANNER4, 0)).unwrap());
    let phone = sender.run(|| UdpSocket::bind((PROVIDER4, 0)).unwrap());
    let probe = sip::svmap_options();
    let invite = phone_invite();
    // `a` scanner probes, then `b` phone INVITEs.
    let send_both = |a: u64, b: u64| {
        send(&scanner, &probe, a);
        send(&phone, &invite, b);
    };
    send_both(3, 3);
    assert_eq!(counter.settle(3), (3, 3), "no filter yet: all arrive");

    // The admin names the WAN interface and reloads.
    edit_config_and_reload(&os, &format!("s/^interfaces: \\[\\]/interfaces: [{wan}]/"));
    wait_journal(&os, "ready: policy applied", 1);
    step("reload: attach", &mut t);
    assert!(xdp_attached(&os, &wan));
    let u = unit(&os);
    assert_eq!(
        (u.active.as_str(), u.sub.as_str(), u.status.as_str()),
        ("active", "running", "filtering")
    );
    let caps = os.sh_ok(&format!(
        "grep -E '^Cap(Eff|Prm|Bnd)' /proc/{}/status",
        u.pid
    ));
    for l in caps.lines() {
        let hex = l.split_whitespace().nth(1).unwrap_or("");
        assert_eq!(
            u64::from_str_radix(hex, 16).ok(),
            Some(UNIT_CAPS),
            "the daemon runs with CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON only: {l}"
        );
    }
    send_both(20, 20);
    assert_eq!(counter.settle(23), (3, 23), "scanner dropped, phone passes");

    // `systemctl reload` applies a changed trusted list.
    edit_config_and_reload(&os, &format!("s/^trusted: \\[\\]/trusted: [{SCANNER4}]/"));
    wait_journal(&os, "policy reloaded", 1);
    send_both(5, 1);
    assert_eq!(counter.settle(24), (8, 24), "the trusted scanner passes");
    edit_config_and_reload(&os, &format!("s/^trusted: \\[{SCANNER4}\\]/trusted: []/"));
    wait_journal(&os, "policy reloaded", 2);
    assert_eq!(unit(&os).status, "filtering");
    send_both(5, 1);
    assert_eq!(counter.settle(25), (8, 25), "untrusted again: dropped");
    step("reload: trusted list", &mut t);

    // `systemctl restart` under a steady stream: not one probe gets through.
    let (s0, p0) = counter.get();
    let stream = Stream::start(
        scanner.try_clone().unwrap(),
        phone.try_clone().unwrap(),
        Duration::from_millis(1),
    );
    std::thread::sleep(Duration::from_millis(200));
    let r0 = Instant::now();
    os.sh_ok("systemctl restart sipguard");
    let restart = r0.elapsed();
    std::thread::sleep(Duration::from_millis(200));
    let (sent_s, sent_p) = stream.stop();
    let (s1, p1) = counter.settle(p0 + sent_p);
    eprintln!(
        "  restart: systemctl restart {restart:.2?}; scanner sent {sent_s}, arrived {}; phone sent {sent_p}, arrived {}",
        s1 - s0,
        p1 - p0
    );
    assert_eq!(s1 - s0, 0, "scanner probes got through during the restart");
    assert_eq!(
        p1 - p0,
        sent_p,
        "phone datagrams were lost during the restart"
    );
    let j = journal(&os);
    assert!(j.contains("adopting the maps pinned"), "{j}");
    // Type=notify: systemd logs Started only after READY=1, which the daemon
    // sends after the policy is applied and the link is adopted.
    let ready = j.rfind("ready: policy applied").unwrap();
    let started = j.rfind("Started sipguard.service").unwrap();
    assert!(ready < started, "READY before Started:\n{j}");
    assert_eq!(unit(&os).status, "filtering");
    step("restart", &mut t);

    // The journal has the drop events.
    assert!(
        j.lines()
            .any(|l| l.contains(" drop ") && l.contains(&SCANNER4.to_string()) && l.contains(&wan)),
        "no drop event for {SCANNER4} on {wan} in the journal:\n{j}"
    );

    // `systemctl stop` with on_exit: keep (the packaged default) keeps filtering.
    os.sh_ok("systemctl stop sipguard");
    assert_eq!(unit(&os).active, "inactive");
    assert!(
        xdp_attached(&os, &wan),
        "on_exit: keep leaves the filter attached"
    );
    let (s0, p0) = counter.get();
    send_both(10, 10);
    assert_eq!(
        counter.settle(p0 + 10),
        (s0, p0 + 10),
        "still filtering after stop"
    );
    os.sh_ok("systemctl start sipguard");
    assert_eq!(unit(&os).status, "filtering");
    step("stop (keep) and start", &mut t);

    // `apt purge` takes the filter and every pin away.
    os.sh_ok("apt-get purge -y sipguard");
    step("apt purge", &mut t);
    assert!(!xdp_attached(&os, &wan), "XDP program left after purge");
    let left: Vec<String> = std::fs::read_dir(&os.bpffs)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n.starts_with("sipguard"))
        .collect();
    assert!(left.is_empty(), "pins left after purge: {left:?}");
    assert!(os.sh("test -e /etc/sipguard").status.code() == Some(1));
    let (s0, _) = counter.get();
    send(&scanner, &probe, 3);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(counter.get().0, s0 + 3, "after purge nothing filters");
    drop(counter);
    drop(os);
    step("poweroff", &mut t);
}
