//! The Debian package, as an admin gets it: built by `cargo xtask package`,
//! checked by lintian, installed with apt into a freshly booted Debian 12
//! whose PID 1 is systemd (systemd-nspawn, tests/src/os.rs), and driven
//! only through systemctl, the config file and apt. Needs root,
//! debootstrap, systemd-nspawn and cargo-deb (scripts/setup.sh --tests);
//! SIPGUARD_DEB=path tests an existing package instead of building one.

use std::{
    net::{Ipv4Addr, UdpSocket},
    path::{Path, PathBuf},
    process::Command,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex, OnceLock,
    },
    time::{Duration, Instant},
};

use sipguard_tests::{
    addresses::{EDGE4, OTHER4, OTHER4B, PBX4, PROVIDER4, SCANNER4, WAN4_PREFIX},
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

/// One package build at a time: they share target/package/generated, and
/// the older package's build starts from a copy of target/release.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `cargo xtask package ARGS`: the .deb and tarball it wrote.
fn build_package(args: &[&str]) -> (PathBuf, PathBuf) {
    let _guard = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let root = workspace_root();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let t0 = Instant::now();
    let out = run_ok(
        Command::new(cargo)
            .current_dir(&root)
            .args(["xtask", "package"])
            .args(args),
    );
    eprintln!("cargo xtask package {args:?}: {:.1?}", t0.elapsed());
    (printed(&out, ".deb"), printed(&out, ".tar.gz"))
}

/// The path ending in `ext` that `cargo xtask package` printed.
fn printed(out: &std::process::Output, ext: &str) -> PathBuf {
    let stdout = String::from_utf8_lossy(&out.stdout);
    stdout
        .lines()
        .find(|l| l.ends_with(ext))
        .map(PathBuf::from)
        .unwrap_or_else(|| panic!("xtask package prints no {ext} path:\n{stdout}"))
}

/// The last commit on main whose `MAP_ABI_VERSION` is 2 (`git log -S
/// 'MAP_ABI_VERSION: u32 = '` finds the change to 3 in its child): the
/// release an upgrade across a map ABI version starts from.
const ABI2_COMMIT: &str = "90a285d7cb816ef7d846a7082f790a47b4ac3561";

/// Applied to [`ABI2_COMMIT`] before it is built: its SIP inspector runs
/// `sip::step` inside its `bpf_loop` callback, and the verifier of newer
/// 6.18 kernels (6.18.44-fc-v1272) gives up on that at 1,000,000
/// instructions, so the release as shipped cannot start there. The patch
/// moves the step into a global function, as this release does, and
/// changes nothing else: maps, pins and the map ABI are the release's.
const ABI2_PATCH: &str = "tests/upgrade/abi2-inspector-global-step.patch";

/// Copies `release` (a target/release) into `target` without anything of
/// this workspace's own packages. Their artifacts carry the same names in
/// both trees (cargo hashes a path package by its place in the workspace)
/// and their dep-info points at this tree's sources, so cargo would take
/// them as the older tree's, fresh; removed, they are built from the older
/// sources. Registry dependencies stay and are not built again.
fn seed_registry_builds(release: &Path, target: &Path) {
    const OURS: [&str; 12] = [
        "sipguard",
        "libsipguard",
        "sipguard_common",
        "sipguard-common",
        "libsipguard_common",
        "sipguard_tests",
        "sipguard-tests",
        "libsipguard_tests",
        "xtask",
        "libxtask",
        "bench",
        "vm_suite",
    ];
    if !release.exists() {
        return;
    }
    run_ok(
        Command::new("cp")
            .args(["-a", "--reflink=auto"])
            .arg(release)
            .arg(target),
    );
    let copy = target.join("release");
    let remove = |p: &Path| {
        if p.is_dir() {
            std::fs::remove_dir_all(p).unwrap();
        } else {
            std::fs::remove_file(p).unwrap();
        }
    };
    let kept = ["deps", "build", ".fingerprint"];
    for e in std::fs::read_dir(&copy).unwrap().filter_map(|e| e.ok()) {
        let name = e.file_name().to_string_lossy().to_string();
        if !kept.contains(&name.as_str()) {
            remove(&e.path());
        }
    }
    for dir in kept {
        for e in std::fs::read_dir(copy.join(dir))
            .unwrap()
            .filter_map(|e| e.ok())
        {
            let name = e.file_name().to_string_lossy().to_string();
            let crate_name = name.rsplit_once('-').map_or(name.as_str(), |(c, _)| c);
            if OURS.contains(&crate_name) {
                remove(&e.path());
            }
        }
    }
}

/// The package of [`ABI2_COMMIT`] with [`ABI2_PATCH`], built by that
/// commit's own `cargo xtask package` from `git archive` in a scratch tree,
/// once: kept under
/// target/upgrade-from/. The tree's target/release starts with this one's
/// registry dependencies (same Cargo.lock, same profile), so only its own
/// crates are built.
fn abi2_package() -> PathBuf {
    if let Some(p) = std::env::var_os("SIPGUARD_OLD_DEB") {
        return PathBuf::from(p);
    }
    let root = workspace_root();
    let dir = os::target_dir()
        .join("upgrade-from")
        .join(format!("{}-global-step", &ABI2_COMMIT[..8]));
    let deb = dir.join("sipguard_0.1.0~abi2-1_amd64.deb");
    if deb.exists() {
        return deb;
    }
    let has = Command::new("git")
        .current_dir(&root)
        .args(["cat-file", "-e", &format!("{ABI2_COMMIT}^{{commit}}")])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        has,
        "this checkout lacks commit {ABI2_COMMIT} (the last one with map ABI 2), \
         which the upgrade test builds its older package from: fetch the full history \
         (git fetch --unshallow) or set SIPGUARD_OLD_DEB to a package of that commit"
    );
    let _guard = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let tree = dir.join("tree");
    let _ = std::fs::remove_dir_all(&tree);
    std::fs::create_dir_all(tree.join("target")).unwrap();
    let t0 = Instant::now();
    run_ok(Command::new("sh").current_dir(&root).arg("-c").arg(format!(
        "git archive {ABI2_COMMIT} | tar -x -C '{}'",
        tree.display()
    )));
    run_ok(
        Command::new("patch")
            .args(["-p1", "--forward", "-d"])
            .arg(&tree)
            .arg("-i")
            .arg(root.join(ABI2_PATCH)),
    );
    seed_registry_builds(&os::target_dir().join("release"), &tree.join("target"));
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = run_ok(
        Command::new(cargo)
            .current_dir(&tree)
            .env("CARGO_TARGET_DIR", tree.join("target"))
            .args(["xtask", "package", "--version-suffix", "abi2"]),
    );
    std::fs::rename(printed(&out, ".deb"), &deb).unwrap();
    std::fs::remove_dir_all(&tree).unwrap();
    eprintln!(
        "the package of {}: built in {:.1?}",
        &ABI2_COMMIT[..8],
        t0.elapsed()
    );
    deb
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
    sent: Arc<Vec<AtomicU64>>,
    thread: Background,
}

impl Stream {
    /// Each socket sends its payload once every `gap`, until stopped.
    fn start(senders: Vec<(UdpSocket, Vec<u8>)>, gap: Duration) -> Stream {
        let sent: Arc<Vec<AtomicU64>> =
            Arc::new(senders.iter().map(|_| AtomicU64::new(0)).collect());
        let c2 = sent.clone();
        let to = format!("{PBX4}:5060");
        let thread = Background::start(move || {
            for (i, (sock, payload)) in senders.iter().enumerate() {
                sock.send_to(payload, &to).unwrap();
                c2[i].fetch_add(1, Ordering::Relaxed);
            }
            std::thread::sleep(gap);
        });
        Stream { sent, thread }
    }

    /// Datagrams sent, per sender.
    fn stop(mut self) -> Vec<u64> {
        if let Some(Err(panic)) = self.thread.halt() {
            std::panic::resume_unwind(panic);
        }
        self.sent
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect()
    }
}

/// The WAN sources the tests send from: a scanner, the phone (or trusted
/// provider), a source to ban, and two registrars to learn.
const SOURCES: [Ipv4Addr; 5] = [SCANNER4, PROVIDER4, OTHER4, OTHER4B, EDGE4];

/// Counts datagrams per source arriving at a UDP port inside the container
/// (after XDP: what the filter let through).
struct Counter {
    counts: Arc<[AtomicU64; SOURCES.len()]>,
    _thread: Background,
}

impl Counter {
    fn start(ns: &Netns) -> Counter {
        let sock = ns.run(|| UdpSocket::bind(("0.0.0.0", 5060)).unwrap());
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        // 16 MiB: seconds of the streams, so a test thread the busy host
        // does not schedule for a while loses nothing (the default holds
        // about 90 datagrams, 45 ms of a two-source stream).
        let bytes: libc::c_int = 16 << 20;
        // SAFETY: setsockopt with an int option on a socket we own.
        let rc = unsafe {
            libc::setsockopt(
                std::os::fd::AsRawFd::as_raw_fd(&sock),
                libc::SOL_SOCKET,
                libc::SO_RCVBUFFORCE,
                (&bytes as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        assert_eq!(rc, 0, "SO_RCVBUFFORCE: {}", std::io::Error::last_os_error());
        let counts: Arc<[AtomicU64; SOURCES.len()]> = Arc::new(Default::default());
        let c2 = counts.clone();
        let mut buf = [0u8; 2048];
        let thread = Background::start(move || {
            if let Ok((_, from)) = sock.recv_from(&mut buf) {
                if let Some(i) = SOURCES.iter().position(|s| from.ip() == *s) {
                    c2[i].fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        Counter {
            counts,
            _thread: thread,
        }
    }

    /// Datagrams from `src` received so far.
    fn of(&self, src: Ipv4Addr) -> u64 {
        let i = SOURCES
            .iter()
            .position(|s| *s == src)
            .expect("a test source");
        self.counts[i].load(Ordering::Relaxed)
    }

    /// (scanner, phone) datagrams received so far.
    fn get(&self) -> (u64, u64) {
        (self.of(SCANNER4), self.of(PROVIDER4))
    }

    /// Waits until `src`'s count reaches `n` (the path is drained, 3 s at
    /// most) and a little longer, then returns it.
    fn wait_for(&self, src: Ipv4Addr, n: u64) -> u64 {
        let t0 = Instant::now();
        while self.of(src) < n && t0.elapsed() < Duration::from_secs(3) {
            std::thread::sleep(Duration::from_millis(10));
        }
        std::thread::sleep(Duration::from_millis(100));
        self.of(src)
    }

    /// Waits until the phone's count reaches `phone`, then returns both
    /// (scanner, phone) counts.
    fn settle(&self, phone: u64) -> (u64, u64) {
        self.wait_for(PROVIDER4, phone);
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

/// Boots the OS with `share` at /mnt/share and a veth from a namespace of
/// the test's (every address of [`SOURCES`]) into the container, whose end
/// holds the PBX's address: (the OS, its network namespace, the sender's,
/// the container's WAN interface).
fn boot_with_wan(rootfs: &Path, share: &Path) -> (Os, Netns, Netns, String) {
    let os = Os::boot(rootfs, share);
    eprintln!("  boot to `running`: {:.2?}", os.boot_time);
    let wan_ns = os.netns();
    let sender = Netns::new("ps");
    let wan = netns::unique("w");
    let peer = netns::unique("p");
    netns::veth(&wan_ns, &wan, &sender, &peer);
    wan_ns.add_addr(&wan, PBX4, WAN4_PREFIX);
    for a in SOURCES {
        sender.add_addr(&peer, a, WAN4_PREFIX);
    }
    (os, wan_ns, sender, wan)
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
    let (os, wan_ns, sender, wan) = boot_with_wan(&rootfs, share);
    let mut t = Instant::now();

    // Installed: enabled, started, idle; nothing attached anywhere.
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
        vec![
            (scanner.try_clone().unwrap(), probe.clone()),
            (phone.try_clone().unwrap(), invite.clone()),
        ],
        Duration::from_millis(1),
    );
    std::thread::sleep(Duration::from_millis(200));
    let r0 = Instant::now();
    os.sh_ok("systemctl restart sipguard");
    let restart = r0.elapsed();
    std::thread::sleep(Duration::from_millis(200));
    let sent = stream.stop();
    let (sent_s, sent_p) = (sent[0], sent[1]);
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

/// A scratch directory, removed when the test ends (passed or not).
struct RemovedOnDrop(PathBuf);

impl Drop for RemovedOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// What the daemon's unit runs: (its executable's path as the kernel
/// shows it, the SHA-256 of that executable).
fn running_binary(os: &Os) -> (String, String) {
    let pid = unit(os).pid;
    let exe = os.sh_ok(&format!("readlink /proc/{pid}/exe"));
    let sum = os.sh_ok(&format!("sha256sum /proc/{pid}/exe"));
    (
        exe.trim().to_string(),
        sum.split_whitespace().next().unwrap_or("").to_string(),
    )
}

/// A REGISTER from the container's WAN address to `registrar`: what the
/// registrar learner (TC egress) learns from.
fn register_to(wan_ns: &Netns, registrar: Ipv4Addr) {
    let register = sip::register("alice", &registrar.to_string(), "Yealink SIP-T46S");
    wan_ns.run(move || {
        let s = UdpSocket::bind((PBX4, 0)).unwrap();
        s.send_to(&register, (registrar, 5060)).unwrap();
    });
}

fn dpkg_version(os: &Os) -> String {
    os.sh_ok("dpkg-query -W -f='${Version}' sipguard")
}

/// `apt-get install` of a package in /mnt/share, keeping the admin's
/// config file as an admin answering dpkg's question would.
fn apt_install(os: &Os, file: &str) -> Duration {
    let t0 = Instant::now();
    os.sh_ok(&format!(
        "apt-get install -y -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold /mnt/share/{file}"
    ));
    t0.elapsed()
}

#[test]
fn upgrading_from_the_map_abi_2_package_keeps_filtering_and_carries_bans_and_learned_registrars() {
    const NAME: &str = "upgrading_from_the_map_abi_2_package_keeps_filtering_and_carries_bans_and_learned_registrars";
    if !require_root(NAME) {
        return;
    }
    let mut tools = tools_for_package();
    tools.extend(["debootstrap", "systemd-nspawn", "nsenter", "git"]);
    if !tools_present(NAME, &tools) {
        return;
    }
    let new = deb();
    let t_old = Instant::now();
    let old = abi2_package();
    eprintln!("  older package ready: {:.1?}", t_old.elapsed());
    for p in [&old, &new] {
        eprintln!(
            "  {}: {} bytes",
            p.display(),
            std::fs::metadata(p).unwrap().len()
        );
    }
    let share = std::env::temp_dir().join(netns::unique("debs"));
    std::fs::create_dir_all(&share).unwrap();
    let name_of = |p: &Path| p.file_name().unwrap().to_string_lossy().to_string();
    let (old_file, new_file) = (name_of(&old), name_of(&new));
    std::fs::copy(&old, share.join(&old_file)).unwrap();
    std::fs::copy(&new, share.join(&new_file)).unwrap();
    let _share = RemovedOnDrop(share.clone());
    let rootfs = os::rootfs();
    let (os, wan_ns, sender, wan) = boot_with_wan(&rootfs, &share);
    let mut t = Instant::now();

    let counter = Counter::start(&wan_ns);
    let sock = |a: Ipv4Addr| sender.run(move || UdpSocket::bind((a, 0)).unwrap());
    let (scanner, provider, banned, registrar, registrar2) = (
        sock(SCANNER4),
        sock(PROVIDER4),
        sock(OTHER4),
        sock(OTHER4B),
        sock(EDGE4),
    );
    let (probe, invite) = (sip::svmap_options(), phone_invite());

    // The older release, installed and configured as an admin would.
    apt_install(&os, &old_file);
    assert_eq!(dpkg_version(&os), "0.1.0~abi2-1");
    os.sh_ok(&format!(
        "sed -i -e 's/^interfaces: \\[\\]/interfaces: [{wan}]/' -e 's/^trusted: \\[\\]/trusted: [{PROVIDER4}]/' /etc/sipguard/sipguard.yaml \
         && printf 'learn_registrars:\\n  enabled: true\\n' >> /etc/sipguard/sipguard.yaml && systemctl reload sipguard"
    ));
    wait_journal(&os, "ready: policy applied", 1);
    assert_eq!(unit(&os).status, "filtering");
    assert!(
        os.bpffs.join("sipguard/v2").is_dir(),
        "the older release pins under v2/"
    );
    let (old_exe, old_sum) = running_binary(&os);
    step("older release installed and filtering", &mut t);

    // Its state: a manual ban, an automatic one, a learned registrar.
    os.sh_ok(&format!("sipguard ban {OTHER4}"));
    send(&banned, &invite, 3);
    send(&registrar, &probe, 2);
    assert_eq!(
        (counter.wait_for(OTHER4, 0), counter.of(OTHER4B)),
        (0, 0),
        "banned, and not yet learned: dropped"
    );
    register_to(&wan_ns, OTHER4B);
    std::thread::sleep(Duration::from_millis(100));
    send(&registrar, &probe, 3);
    assert_eq!(
        counter.wait_for(OTHER4B, 3),
        3,
        "the learned registrar passes"
    );
    send(&scanner, &probe, 12);
    send(&provider, &invite, 3);
    assert_eq!(counter.wait_for(PROVIDER4, 3), 3);
    assert_eq!(counter.of(SCANNER4), 0);
    let bans = os.sh_ok("sipguard bans");
    assert!(
        bans.contains(&OTHER4.to_string()) && bans.contains(&SCANNER4.to_string()),
        "the older release banned both:\n{bans}"
    );
    let before: serde_json::Value =
        serde_json::from_str(&os.sh_ok("sipguard stats --json")).unwrap();
    step("bans and a learned registrar made", &mut t);

    // `apt install` of this release over it, under a steady stream.
    let base: Vec<u64> = SOURCES[..4].iter().map(|s| counter.of(*s)).collect();
    let stream = Stream::start(
        vec![
            (scanner.try_clone().unwrap(), probe.clone()),
            (provider.try_clone().unwrap(), invite.clone()),
            (banned.try_clone().unwrap(), invite.clone()),
            (registrar.try_clone().unwrap(), probe.clone()),
        ],
        Duration::from_millis(1),
    );
    std::thread::sleep(Duration::from_millis(200));
    let upgrade = apt_install(&os, &new_file);
    std::thread::sleep(Duration::from_millis(300));
    let sent = stream.stop();
    counter.wait_for(PROVIDER4, base[1] + sent[1]);
    let through: Vec<u64> = SOURCES[..4]
        .iter()
        .zip(&base)
        .map(|(s, b)| counter.wait_for(*s, 0) - b)
        .collect();
    eprintln!(
        "  upgrade: apt install {upgrade:.2?}; sent (scanner, trusted, banned, learned) {sent:?}, arrived {through:?}"
    );
    let j = journal(&os);
    let udp = os.sh_ok("grep '^Udp:' /proc/net/snmp");
    assert_eq!(
        through[0], 0,
        "scanner probes got through the upgrade:\n{j}"
    );
    assert_eq!(
        through[2], 0,
        "the banned source got through the upgrade:\n{j}"
    );
    assert_eq!(
        through[1], sent[1],
        "trusted datagrams lost in the upgrade (the receiver's UDP counters: {udp}):\n{j}"
    );
    assert_eq!(
        through[3], sent[3],
        "the learned registrar was dropped in the upgrade:\n{j}"
    );
    step("upgrade under traffic", &mut t);

    // This release runs, from the older one's state, without its pins.
    let abi = sipguard_common::MAP_ABI_VERSION;
    assert_eq!(dpkg_version(&os), "0.1.0-1");
    let u = unit(&os);
    assert_eq!(
        (u.active.as_str(), u.status.as_str()),
        ("active", "filtering"),
        "{j}"
    );
    let (exe, sum) = running_binary(&os);
    assert_eq!(exe, "/usr/bin/sipguard", "the unit runs the installed file");
    assert_eq!(old_exe, "/usr/bin/sipguard");
    assert_ne!(sum, old_sum, "the unit still runs the older binary");
    assert_eq!(
        sum,
        os.sh_ok("sha256sum /usr/bin/sipguard")
            .split_whitespace()
            .next()
            .unwrap()
    );
    for line in [
        format!("{wan}: taking over the XDP link of map ABI v2"),
        format!("map ABI v2 -> v{abi}: carried"),
        "removed the pins of map ABI v2".to_string(),
    ] {
        assert!(j.contains(&line), "no '{line}' in the journal:\n{j}");
    }
    let carried = j.lines().find(|l| l.contains("map ABI v2 -> v")).unwrap();
    eprintln!("  {carried}");
    for map in ["BANS 2", "LEARNED_V4 1", "COUNTERS "] {
        assert!(carried.contains(map), "{map}: {carried}");
    }
    assert!(
        !os.bpffs.join("sipguard/v2").exists(),
        "v2 pins left behind"
    );
    assert!(os.bpffs.join(format!("sipguard/v{abi}")).is_dir());
    let bans = os.sh_ok("sipguard bans");
    assert!(
        bans.contains(&OTHER4.to_string()) && bans.contains(&SCANNER4.to_string()),
        "bans not carried:\n{bans}"
    );
    let trusted = os.sh_ok("sipguard trusted");
    assert!(
        trusted.contains(&OTHER4B.to_string()),
        "registrar not carried:\n{trusted}"
    );
    // Counters: what the older release counted plus what both counted
    // during the upgrade.
    let after: serde_json::Value =
        serde_json::from_str(&os.sh_ok("sipguard stats --json")).unwrap();
    let dropped = |v: &serde_json::Value| v["dropped"].as_u64().unwrap_or(0);
    let expected = dropped(&before) + sent[0] + sent[2];
    eprintln!(
        "  counters: dropped {} before, {} after; {} dropped during the upgrade, so {} not carried",
        dropped(&before),
        dropped(&after),
        sent[0] + sent[2],
        expected.saturating_sub(dropped(&after))
    );
    assert!(
        dropped(&after) > dropped(&before) && dropped(&after) <= expected,
        "counters not carried: {before} / {after}"
    );
    // This release learns again (its learner is attached to the adopted link).
    send(&registrar2, &probe, 2);
    register_to(&wan_ns, EDGE4);
    std::thread::sleep(Duration::from_millis(100));
    send(&registrar2, &probe, 3);
    assert_eq!(
        counter.wait_for(EDGE4, 3),
        3,
        "this release does not learn registrars"
    );
    step("checks after the upgrade", &mut t);
    drop(counter);
    drop(os);
    step("poweroff", &mut t);
}
