//! Text output: the machine description and Markdown tables, also spliced
//! into `results.md` between per-section markers.

use std::{fs, path::Path, process::Command};

use anyhow::Result;
use serde_json::{json, Value};

fn sh(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

pub fn machine() -> Value {
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).to_string());
    json!({
        "nproc": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "cpu_model": model,
        "kernel": sh("uname", &["-r"]),
        "date": sh("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
        "load_avg_at_start": fs::read_to_string("/proc/loadavg").unwrap_or_default().split_whitespace().take(3).collect::<Vec<_>>().join(" "),
    })
}

fn f(v: &Value, path: &[&str]) -> f64 {
    let mut v = v;
    for p in path {
        v = &v[*p];
    }
    v.as_f64().unwrap_or(f64::NAN)
}

fn machine_line(r: &Value) -> String {
    let m = &r["machine"];
    format!(
        "{} CPUs ({}), kernel {}, {}; load average at start {}",
        m["nproc"],
        m["cpu_model"].as_str().unwrap_or("?"),
        m["kernel"].as_str().unwrap_or("?"),
        m["date"].as_str().unwrap_or("?"),
        m["load_avg_at_start"].as_str().unwrap_or("?"),
    )
}

pub fn classes_table(r: &Value) -> String {
    let mut s = format!(
        "Machine: {}.\n\nBPF_PROG_TEST_RUN, {} rounds x {} runs per class; ratio = class ns / empty XDP program ns \
         in the same round (median, p25-p75, min-max over rounds). Empty program: {:.1} ns median ({:.1}-{:.1}). \
         Verifier: {} instructions processed.\n\n",
        machine_line(r),
        r["rounds"],
        r["repeat"],
        f(r, &["empty_ns", "median"]),
        f(r, &["empty_ns", "min"]),
        f(r, &["empty_ns", "max"]),
        r["verifier_instructions"],
    );
    s += "| class | frame B | ns (median) | ratio (median) | ratio p25-p75 | ratio min-max | target | met |\n";
    s += "|---|---:|---:|---:|---:|---:|---:|:---:|\n";
    for c in r["classes"].as_array().into_iter().flatten() {
        let target = c["target_ratio"]
            .as_f64()
            .map(|t| format!("<= {t}x"))
            .unwrap_or_default();
        let met = match c["meets_target"].as_bool() {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "",
        };
        s += &format!(
            "| {} | {} | {:.1} | {:.2}x | {:.2}-{:.2} | {:.2}-{:.2} | {} | {} |\n",
            c["name"].as_str().unwrap_or("?"),
            c["frame_bytes"],
            f(c, &["ns", "median"]),
            f(c, &["ratio", "median"]),
            f(c, &["ratio", "p25"]),
            f(c, &["ratio", "p75"]),
            f(c, &["ratio", "min"]),
            f(c, &["ratio", "max"]),
            target,
            met,
        );
    }
    let b = &r["blocklist"];
    s += &format!(
        "\n1M-entry blocklist (random /32 and /24, fixed seed): {} entries loaded in {:.1} s; \
         kernel memory by fdinfo memlock: the /32s in the BLOCKED_V4_HOSTS hash, {} entries, {:.1} MiB \
         ({:.0} bytes/entry including its {:.0} MiB of buckets, allocated when the map is created); \
         the /24s in the BLOCKED_V4 trie, {} entries, {:.1} MiB ({:.0} bytes/entry, leaf nodes only); \
         during the load the kmalloc slab caches grew by {:.1} MiB and unreclaimable slab by {:.1} MiB \
         (these include intermediate trie nodes and allocation rounding, and anything else the kernel allocated meanwhile on this shared machine).\n",
        b["entries"],
        f(b, &["insert_seconds"]),
        b["hosts_entries"],
        f(b, &["hosts_memory_bytes"]) / 1048576.0,
        f(b, &["hosts_memory_bytes"]) / f(b, &["hosts_entries"]),
        (sipguard_common::BLOCKED_V4_HOSTS_ENTRIES as f64 * 16.0) / 1048576.0,
        b["trie_entries"],
        f(b, &["trie_memory_bytes"]) / 1048576.0,
        f(b, &["trie_memory_bytes"]) / f(b, &["trie_entries"]),
        f(b, &["kmalloc_growth_bytes"]) / 1048576.0,
        f(b, &["slab_growth_bytes"]) / 1048576.0,
    );
    for c in r["compare"].as_array().into_iter().flatten() {
        if let Some(m) = c.get("blocklist").filter(|m| !m.is_null()) {
            s += &format!(
                "\nBuild '{}', same list: BLOCKED_V4 trie {} entries, {:.1} MiB ({:.0} bytes/entry); host hash {} entries, {:.1} MiB.\n",
                c["build"].as_str().unwrap_or("?"),
                m["trie_entries"],
                f(m, &["trie_memory_bytes"]) / 1048576.0,
                f(m, &["trie_memory_bytes"]) / f(m, &["trie_entries"]).max(1.0),
                m["hosts_entries"],
                f(m, &["hosts_memory_bytes"]) / 1048576.0,
            );
        }
    }
    let compare = r["compare"].as_array().cloned().unwrap_or_default();
    if !compare.is_empty() {
        s += "\nOther builds of the program, timed on the same classes in the same rounds (median ratio to the empty program):\n\n| class |";
        for b in &compare {
            s += &format!(" {} |", b["build"].as_str().unwrap_or("?"));
        }
        s += " this build |\n|---|";
        s += &"---:|".repeat(compare.len() + 1);
        s += "\n";
        for (i, c) in r["classes"].as_array().into_iter().flatten().enumerate() {
            s += &format!("| {} |", c["name"].as_str().unwrap_or("?"));
            for b in &compare {
                s += &format!(" {:.2}x |", f(&b["classes"][i], &["ratio", "median"]));
            }
            s += &format!(" {:.2}x |\n", f(c, &["ratio", "median"]));
        }
        s += "| *verifier: instructions processed* |";
        for b in &compare {
            s += &format!(" {} |", b["verifier_instructions"]);
        }
        s += &format!(" {} |\n", r["verifier_instructions"]);
    }
    for m in r["missing"].as_array().into_iter().flatten() {
        s += &format!("\nNot measured: {}.\n", m.as_str().unwrap_or("?"));
    }
    s
}

fn class_by_key<'a>(r: &'a Value, key: &str) -> Option<&'a Value> {
    r["classes"].as_array()?.iter().find(|c| c["key"] == key)
}

/// sipguard against xdp-filter on the same jobs, from the per-class run.
pub fn peer_table(r: &Value) -> String {
    let p = &r["peer"];
    let Some(jobs) = p["jobs"].as_array() else {
        return "The XDP peer was not measured in this run (see \"Not measured\" above).\n".into();
    };
    let mut s = format!(
        "Machine: {}.\n\nxdp-filter (xdp-tools, the distribution's own BPF objects, allow mode) and sipguard on the same frames, \
         BPF_PROG_TEST_RUN, each xdp-filter job timed right after its sipguard class in each of the {} rounds. \
         sipguard / xdp-filter is the median over rounds of the two times of the same round (p25-p75 beside it).\n\n",
        machine_line(r),
        r["rounds"],
    );
    s += "| job | xdp-filter program | sipguard class | xdp-filter ns | sipguard ns | sipguard / xdp-filter | p25-p75 | target | met |\n";
    s += "|---|---|---|---:|---:|---:|---:|---:|:---:|\n";
    for j in jobs {
        let sg = class_by_key(r, j["class_key"].as_str().unwrap_or(""));
        let (what, prog) = (
            j["name"].as_str().unwrap_or("?"),
            j["program"].as_str().unwrap_or("?"),
        );
        s += &format!(
            "| {} | {} | {} | {:.1} | {:.1} | {:.2}x | {:.2}-{:.2} | <= {}x | {} |\n",
            what,
            prog,
            j["class_name"].as_str().unwrap_or("?"),
            f(j, &["ns", "median"]),
            sg.map(|c| f(c, &["ns", "median"])).unwrap_or(f64::NAN),
            f(j, &["sipguard_over_peer", "median"]),
            f(j, &["sipguard_over_peer", "p25"]),
            f(j, &["sipguard_over_peer", "p75"]),
            j["target"],
            if j["meets_target"].as_bool() == Some(true) {
                "yes"
            } else {
                "**no**"
            },
        );
    }
    let trie = &p["sipguard_trie"];
    let hosts = &p["sipguard_hosts"];
    s += &format!(
        "\nKernel memory for 1,000,000 IPv4 entries, by each map's fdinfo memlock: sipguard's BLOCKED_V4_HOSTS hash {:.1} MiB for {} /32s ({:.0} B/entry, buckets included) \
         and BLOCKED_V4 LPM trie {:.1} MiB for {} /24s ({:.0} B/entry, leaf nodes only: the slab growth in the footnote above is the fuller figure)",
        f(hosts, &["memlock_bytes"]) / 1048576.0,
        hosts["entries"],
        f(hosts, &["bytes_per_entry"]),
        f(trie, &["memlock_bytes"]) / 1048576.0,
        trie["entries"],
        f(trie, &["bytes_per_entry"]),
    );
    for t in p["tables_1m"].as_array().into_iter().flatten() {
        s += &format!(
            "; {} filter_ipv4 (per-CPU hash, preallocated at its size, {} CPUs) {:.1} MiB for {} addresses ({:.0} B/entry)",
            t["features"].as_str().unwrap_or("?"),
            r["machine"]["nproc"],
            f(t, &["memlock_bytes"]) / 1048576.0,
            t["entries"],
            f(t, &["bytes_per_entry"]),
        );
    }
    s += ".\n";
    s
}

/// Each drop class in the sandbox setting and with the daemon's settings.
pub fn daemon_settings_table(r: &Value) -> String {
    let d = &r["daemon_settings"];
    let mut s = format!(
        "Machine: {}.\n\nSandbox: events and bans off (a new sandbox, as in the table above). Daemon: the settings `sipguard run` writes \
         to the OPS map (drop events sampled per source, automatic bans; the ban threshold raised out of the bench's reach so an untrusted \
         source stays below it). Ratios of ns in the same round, median over {} rounds.\n\n",
        machine_line(r),
        r["rounds"],
    );
    s += "| class | sandbox x empty | daemon x empty | daemon / sandbox |\n|---|---:|---:|---:|\n";
    for p in d["pairs"].as_array().into_iter().flatten() {
        let (a, b) = (
            class_by_key(r, p["sandbox"].as_str().unwrap_or("")),
            class_by_key(r, p["daemon"].as_str().unwrap_or("")),
        );
        s += &format!(
            "| {} | {:.2}x | {:.2}x | {:.2}x |\n",
            a.and_then(|c| c["name"].as_str()).unwrap_or("?"),
            a.map(|c| f(c, &["ratio", "median"])).unwrap_or(f64::NAN),
            b.map(|c| f(c, &["ratio", "median"])).unwrap_or(f64::NAN),
            f(p, &["daemon_over_sandbox", "median"]),
        );
    }
    let m = f(d, &["banned_ops_over_blocked_small", "median"]);
    s += &format!(
        "\nTarget: a banned source with the daemon's settings (a flood's steady state) <= {}x a static blocklist hit (1-entry list, sandbox) \
         in the same run: {:.2}x (p25-p75 {:.2}-{:.2}): {}. Against the blocklist hit with the daemon's settings: {:.2}x.\n",
        d["target"],
        m,
        f(d, &["banned_ops_over_blocked_small", "p25"]),
        f(d, &["banned_ops_over_blocked_small", "p75"]),
        if m <= f(d, &["target"]) { "met" } else { "**not met**" },
        f(d, &["banned_ops_over_blocked_small_ops", "median"]),
    );
    s
}

/// The rows of one flood's arms, each against that flood's own iptables
/// arm and floor.
fn flood_rows(arms: &[Value]) -> (String, impl Fn(&str, &str) -> f64 + '_) {
    let get = move |key: &str, field: &str| {
        arms.iter()
            .find(|a| a["key"] == key)
            .map(|a| f(a, &[field]))
            .unwrap_or(f64::NAN)
    };
    let (ipt_pps, ipt_cpu, floor_cpu) = (
        get("iptables_raw_string", "dropped_pps"),
        get("iptables_raw_string", "cpu_ns_per_packet"),
        get("xdp_drop_floor", "cpu_ns_per_packet"),
    );
    let mut s = String::from(
        "| filter | dropped Mpps (wall) | x iptables | CPU ns/packet | over floor | Mpps per CPU-s | x iptables | dropped / sent | trusted calls: INVITEs sent / answered | daemon CPU | daemon RSS idle / flood |\n",
    );
    s += "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n";
    for a in arms {
        let rss = match (
            a["daemon_rss_kib_idle"].as_u64(),
            a["daemon_rss_kib_flood"].as_u64(),
        ) {
            (Some(i), Some(fl)) => {
                format!("{:.1} / {:.1} MiB", i as f64 / 1024.0, fl as f64 / 1024.0)
            }
            _ => String::new(),
        };
        let calls = match (
            a["calls"]["invites_sent"].as_u64(),
            a["calls"]["answered"].as_u64(),
        ) {
            (Some(sent), Some(ok)) if sent == ok => format!("{sent} / {ok}"),
            (Some(sent), Some(ok)) => format!("{sent} / {ok} (**{} lost**)", sent - ok),
            _ => "n/a (drops all)".into(),
        };
        let daemon = a["daemon_cpu_share"]
            .as_f64()
            .map(|c| format!("{:.0} % of a CPU", c * 100.0))
            .unwrap_or_default();
        let cpu = f(a, &["cpu_ns_per_packet"]);
        s += &format!(
            "| {} | {:.3} | {:.1}x | {:.0} | {:.0} | {:.2} | {:.1}x | {:.3} | {} | {} | {} |\n",
            a["label"].as_str().unwrap_or("?"),
            f(a, &["dropped_pps"]) / 1e6,
            f(a, &["dropped_pps"]) / ipt_pps,
            cpu,
            cpu - floor_cpu,
            1e3 / cpu,
            ipt_cpu / cpu,
            f(a, &["dropped"]) / f(a, &["sent"]),
            calls,
            daemon,
            rss,
        );
    }
    (s, get)
}

/// Target line of a flood: sipguard native against iptables.
fn flood_target(get: &impl Fn(&str, &str) -> f64) -> String {
    let (ipt_cpu, floor_cpu, native) = (
        get("iptables_raw_string", "cpu_ns_per_packet"),
        get("xdp_drop_floor", "cpu_ns_per_packet"),
        get("sipguard_native", "cpu_ns_per_packet"),
    );
    let wall = get("sipguard_native", "dropped_pps") / get("iptables_raw_string", "dropped_pps");
    format!(
        "\nTarget: sipguard native drops >= 5x the iptables string-match rate. Wall clock: {:.1}x; per CPU-second: {:.1}x ({}); \
         filter cost alone (over floor): {:.1}x. The floor itself is {:.1}x iptables per CPU-second: no filter can exceed that.\n",
        wall,
        ipt_cpu / native,
        if ipt_cpu / native >= 5.0 { "met" } else { "**not met**" },
        (ipt_cpu - floor_cpu) / (native - floor_cpu),
        ipt_cpu / floor_cpu,
    )
}

fn flood_method(r: &Value, what: &str) -> String {
    format!(
        "Machine: {}; load average at the end {}.\n\nFlood: {}-byte friendly-scanner INVITEs (User-Agent last) {what}, {:.0} s per arm, one after another in the same run, \
         generated by BPF_PROG_TEST_RUN live frames (an XDP_TX program transmitting into a veth pair) on one SCHED_FIFO thread pinned to CPU {}; \
         veth runs the receiver's NAPI in softirq on that same CPU, so the generator thread's CPU clock covers sending and receiving. \
         sipguard policy: {}. Drops from the filters' own counters (`sipguard stats --json`, `iptables -vnxL`, nft rule counter; \
         the floor: veth rx_packets). CPU ns/packet = (generator thread CPU time + ksoftirqd/{} time) / packets dropped; \
         `over floor` subtracts the bare XDP_DROP arm, i.e. the generator's and veth's share. \
         Per CPU-s = 1000 / CPU ns per packet: the drop rate one dedicated CPU would sustain, immune to other jobs on this shared machine. \
         Trusted calls: during each arm the trusted caller sends INVITEs at 200/s (no retransmissions) through the same filter and counts the 200 OKs. \
         Daemon CPU: `sipguard run`'s user + system time over the arm (it runs on the other CPU: events, stats).\n\n",
        machine_line(r),
        r["load_avg_at_end"].as_str().unwrap_or("?"),
        r["frame_bytes"],
        f(r, &["seconds_per_arm"]),
        r["cpu"],
        r["sipguard_policy"].as_str().unwrap_or("?"),
        r["cpu"],
    )
}

pub fn flood_table(r: &Value) -> String {
    let arms = r["arms"].as_array().cloned().unwrap_or_default();
    let mut s = flood_method(
        r,
        "from one untrusted source (banned by the daemon after its first 10 drops)",
    );
    let (rows, get) = flood_rows(&arms);
    s += &rows;
    s += &flood_target(&get);
    let floor = get("xdp_drop_floor", "cpu_ns_per_packet");
    let native = get("sipguard_native", "cpu_ns_per_packet");
    s +=
        &format!(
        "Target: sipguard native >= 0.7x the bare XDP_DROP floor per CPU-second: {:.2}x ({}).\n",
        floor / native,
        if floor / native >= 0.7 { "met" } else { "**not met**" },
    );
    let (blocked, sandbox) = (
        get("sipguard_native_blocked", "cpu_ns_per_packet"),
        get("sipguard_native_blocked_sandbox", "cpu_ns_per_packet"),
    );
    if blocked.is_finite() && sandbox.is_finite() {
        s += &format!(
            "What sipguard's {:.0} ns over the floor are made of (same run): its cheapest drop (the source in the static blocklist) with a sandbox's settings \
             (OPS zeroed on the daemon's attached program: no events, no bans) {:.0} ns; the daemon's settings (drop events sampled per source) add {:.0} ns; \
             a ban instead of a static entry (the BANS lookup and the clock read) adds {:.0} ns.\n",
            native - floor,
            sandbox - floor,
            blocked - sandbox,
            native - blocked,
        );
    }
    let peer = get("xdp_filter_native", "cpu_ns_per_packet");
    if peer.is_finite() {
        s += &format!(
            "Against xdp-filter (default features, the flood's source in its address table): sipguard native drops {:.2}x its wall-clock rate; \
             CPU per packet {:.2}x xdp-filter's, {:.2}x over the floor (sipguard / xdp-filter).\n",
            get("sipguard_native", "dropped_pps") / get("xdp_filter_native", "dropped_pps"),
            native / peer,
            (native - floor) / (peer - floor),
        );
    }
    s
}

pub fn distributed_table(r: &Value) -> String {
    let d = &r["distributed"];
    let arms = d["arms"].as_array().cloned().unwrap_or_default();
    let mut s = flood_method(
        r,
        &format!(
            "from {} sources ({}/16, the generator stepping the source address from a counter, checksum updated), \
             each below sipguard's ban threshold (raised to 1,000,000 for this flood, so every packet is inspected and counted towards a ban)",
            d["sources"],
            d["base"].as_str().unwrap_or("?"),
        ),
    );
    s += "nftables has no string search (its raw payload match `@ih,OFFSET,LENGTH` compares bytes at a fixed offset, and the User-Agent's offset \
          varies with the message), so its arm is what nftables users deploy for the job instead: `udp dport 5060 ip saddr != @trusted4 counter drop` \
          in a `prerouting` chain at priority `raw`, which drops every SIP packet from a source outside the trusted set, legitimate callers from \
          unknown addresses included (a stricter job than sipguard's `policy: inspect`). iptables here is iptables-nft: `-m string` runs as an xt \
          match inside nf_tables.\n\n";
    let (rows, get) = flood_rows(&arms);
    s += &rows;
    s += &flood_target(&get);
    s
}

/// Replaces the text between `<!-- bench:NAME -->` and `<!-- /bench:NAME -->`
/// in `results.md` (created when missing).
pub fn write_section(dir: &Path, name: &str, body: &str) -> Result<()> {
    let path = dir.join("results.md");
    let text = fs::read_to_string(&path).unwrap_or_else(|_| {
        "# sipguard benchmark results (generated by `cargo xtask bench`)\n".into()
    });
    fs::write(&path, splice(&text, name, body, true))?;
    Ok(())
}

/// The same inside a hand-written document, only where it has the markers.
pub fn update_doc(path: &Path, name: &str, body: &str) -> Result<()> {
    if let Ok(text) = fs::read_to_string(path) {
        let new = splice(&text, name, body, false);
        if new != text {
            fs::write(path, new)?;
        }
    }
    Ok(())
}

fn splice(text: &str, name: &str, body: &str, append: bool) -> String {
    let (open, close) = (
        format!("<!-- bench:{name} -->"),
        format!("<!-- /bench:{name} -->"),
    );
    let block = format!("{open}\n{body}{close}");
    match (text.find(&open), text.find(&close)) {
        (Some(a), Some(b)) if b > a => {
            format!("{}{}{}", &text[..a], block, &text[b + close.len()..])
        }
        _ if append => format!("{}\n{}\n", text.trim_end(), block),
        _ => text.to_string(),
    }
}
