//! `cargo xtask bench [--flood] [--quick] [--out DIR]`: what sipguard costs.
//!
//! 1. Per packet class, the real XDP program's cost through
//!    BPF_PROG_TEST_RUN as a ratio to the empty XDP program of the same
//!    object, timed in the same rounds (machines here are shared and noisy:
//!    only ratios measured side by side mean something).
//! 2. With `--flood`: one flood of scanner INVITEs over a veth pair in
//!    private network namespaces, dropped in turn by sipguard (native XDP,
//!    skb mode), iptables string match and an nftables source rule.
//!
//! Writes `bench.json`, `flood.json`, SVG charts and `results.md` to the
//! output directory (default `docs/bench`, and then the tables in
//! `docs/BENCHMARKS.md` are refreshed too; `--quick` defaults to
//! `target/bench` so sanity runs never overwrite the published figures).
//! Needs root. Not a test: performance is measured here, never asserted in
//! `cargo test`.

mod calls;
mod chart;
mod classes;
mod crowdsec;
mod flood;
mod payload;
mod rawbpf;
mod report;
mod xdpfilter;

use std::path::PathBuf;

use anyhow::{bail, Context as _, Result};
use serde_json::{json, Value};

/// splitmix64: a fixed-seed generator for the blocklist (no dependency).
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// CPU time of the calling thread, in ns (sum_exec_runtime: exact, and on
/// this kernel without IRQ_TIME_ACCOUNTING it includes softirqs the thread
/// ran, such as veth's receive path after the generator's batches).
pub fn thread_cpu_ns() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid timespec to write to.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 * 1e9 + ts.tv_nsec as f64
}

/// Median, quartiles and range of a sample.
pub fn stats(v: &[f64]) -> Value {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let q = |f: f64| s[((s.len() - 1) as f64 * f).round() as usize];
    json!({ "median": q(0.5), "p25": q(0.25), "p75": q(0.75), "min": s[0], "max": s[s.len() - 1], "n": s.len() })
}

struct Args {
    flood: bool,
    crowdsec: bool,
    classes: bool,
    quick: bool,
    out: Option<PathBuf>,
    seconds: Option<f64>,
    compare: Vec<(String, PathBuf)>,
}

fn parse_args() -> Result<Args> {
    let mut a = Args {
        flood: false,
        crowdsec: false,
        classes: true,
        quick: false,
        out: None,
        seconds: None,
        compare: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--flood" => a.flood = true,
            "--flood-only" => {
                a.flood = true;
                a.classes = false;
            }
            "--crowdsec" => a.crowdsec = true,
            "--crowdsec-only" => {
                a.crowdsec = true;
                a.classes = false;
            }
            "--quick" => a.quick = true,
            "--compare" => {
                let v = it.next().context("--compare needs LABEL=OBJECT")?;
                let (label, path) = v.split_once('=').context("--compare needs LABEL=OBJECT")?;
                a.compare.push((label.to_string(), path.into()));
            }
            "--out" => a.out = Some(it.next().context("--out needs a directory")?.into()),
            "--seconds" => {
                a.seconds = Some(
                    it.next()
                        .context("--seconds needs a number")?
                        .parse()
                        .context("--seconds")?,
                )
            }
            "-h" | "--help" => {
                println!(
                    "usage: cargo xtask bench [--flood | --flood-only] [--quick] [--seconds S] [--out DIR]\n\
                     \n  --flood       also run the veth flood side by side (5 s per arm)\n  \
                     --crowdsec    also pull 100,000 decisions and a 1,000 delta from a real Local API\n  \
                     --quick       few rounds, 1 s per arm, output to target/bench (sanity check)\n  \
                     --compare LABEL=OBJECT  also time another build of the eBPF object (e.g. from\n                   `cargo xtask build-ebpf --out DIR` at another commit) in the same rounds\n  \
                     --out DIR     where bench.json, flood.json, *.svg and results.md go (default docs/bench)"
                );
                std::process::exit(0);
            }
            other => bail!("unknown argument '{other}' (try --help)"),
        }
    }
    Ok(a)
}

fn main() -> Result<()> {
    let args = parse_args()?;
    // SAFETY: geteuid has no preconditions.
    anyhow::ensure!(
        unsafe { libc::geteuid() } == 0,
        "the benchmark loads XDP programs and creates network namespaces: run it as root"
    );
    // Other jobs share this machine: nice -20 (inherited by the flood
    // threads) keeps them from taking most of the benchmark's CPU.
    // SAFETY: setpriority on the calling thread.
    if unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, -20) } != 0 {
        eprintln!(
            "note: could not raise priority: {}",
            std::io::Error::last_os_error()
        );
    }
    // At run time first: `cargo run` sets it to this checkout even when the
    // binary was built elsewhere and reused from a copied target directory.
    let root = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
        .join("..");
    let out = args.out.clone().unwrap_or_else(|| {
        root.join(if args.quick {
            "target/bench"
        } else {
            "docs/bench"
        })
    });
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let machine = report::machine();
    // A full run with the default output refreshes the published figures
    // in docs/BENCHMARKS.md too (between its bench markers).
    let publish = !args.quick && args.out.is_none();
    // A result table: printed, written as a section into `out`, and (for a
    // full run into the default place) into docs/BENCHMARKS.md.
    let show = |table: &str, section: &str| -> anyhow::Result<()> {
        println!("{table}");
        report::write_section(&out, section, table)?;
        if publish {
            report::update_doc(&root.join("docs/BENCHMARKS.md"), section, table)?;
        }
        Ok(())
    };

    let inspect_exists = args.flood && classes::has_inspector()?;
    if args.classes {
        let mut compare = Vec::new();
        for (label, path) in &args.compare {
            compare.push((
                label.clone(),
                std::fs::read(path).with_context(|| format!("reading {}", path.display()))?,
            ));
        }
        let (rounds, repeat) = if args.quick {
            (3, 200_000)
        } else {
            (21, 1_000_000)
        };
        let p = classes::Params {
            rounds,
            repeat,
            compare,
        };
        eprintln!(
            "per-class: {} rounds x {} runs per class ...",
            p.rounds, p.repeat
        );
        let mut r = classes::run(&p)?;
        r["machine"] = machine.clone();
        std::fs::write(out.join("bench.json"), serde_json::to_string_pretty(&r)?)?;
        chart::ratios(&r, &out.join("ratios.svg"))?;
        chart::peer(&r, &out.join("peer.svg"))?;
        show(&report::classes_table(&r), "classes")?;
        show(&report::peer_table(&r), "peer")?;
        show(&report::daemon_settings_table(&r), "daemon")?;
    }
    if args.flood {
        let p = flood::Params {
            seconds: args.seconds.unwrap_or(if args.quick { 1.0 } else { 5.0 }),
        };
        let mut r = flood::run(&p, inspect_exists)?;
        r["machine"] = machine.clone();
        show(&report::flood_table(&r), "flood")?;
        show(&report::distributed_table(&r), "distributed")?;
        std::fs::write(out.join("flood.json"), serde_json::to_string_pretty(&r)?)?;
        chart::flood(
            &r["arms"],
            "scanner INVITE flood, one source",
            &out.join("flood.svg"),
        )?;
        chart::flood(
            &r["distributed"]["arms"],
            "scanner INVITE flood, 65,536 sources",
            &out.join("distributed.svg"),
        )?;
    }
    if args.crowdsec {
        let (total, delta) = if args.quick {
            (10_000, 1_000)
        } else {
            (100_000, 1_000)
        };
        let mut r = crowdsec::run(total, delta)?;
        r["machine"] = machine.clone();
        println!("{}", crowdsec::table(&r));
        std::fs::write(out.join("crowdsec.json"), serde_json::to_string_pretty(&r)?)?;
        report::write_section(&out, "crowdsec", &crowdsec::table(&r))?;
    }
    eprintln!("results in {}", out.display());
    Ok(())
}
