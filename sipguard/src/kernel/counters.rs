//! Counters: per-CPU values summed into a snapshot per interface, mode and
//! reason; rendered as a table or JSON for `sipguard stats`.

use std::{collections::BTreeMap, path::Path};

use anyhow::Result;
use aya::maps::{Array, MapData, PerCpuArray};
use serde_json::{json, Value};
use sipguard_common::{counter_index, Counter, IfaceName, Reason, IFACE_SLOTS};

/// One non-zero counter cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cell {
    pub slot: u32,
    pub monitored: bool,
    pub reason: Reason,
    pub packets: u64,
    pub bytes: u64,
}

#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub cells: Vec<Cell>,
    /// slot -> interface label (name, or `ifindex N` outside its netns).
    pub interfaces: BTreeMap<u32, String>,
}

/// Sums one counter cell over all CPUs.
pub fn read_cell(map: &PerCpuArray<MapData, Counter>, idx: u32) -> Result<Counter> {
    let values = map.get(&idx, 0)?;
    let mut sum = Counter::default();
    for v in values.iter() {
        // Kernel-supplied values: wrap rather than panic on overflow.
        sum.packets = sum.packets.wrapping_add(v.packets);
        sum.bytes = sum.bytes.wrapping_add(v.bytes);
    }
    Ok(sum)
}

/// The interface slot map and the slot names, for labelling counters.
pub type SlotMaps<'a> = (&'a Array<MapData, u32>, &'a Array<MapData, IfaceName>);

/// Reads every known reason of every slot.
pub fn snapshot(
    counters: &PerCpuArray<MapData, Counter>,
    slots: Option<SlotMaps<'_>>,
) -> Result<Snapshot> {
    let mut snap = Snapshot::default();
    for slot in 0..IFACE_SLOTS {
        for monitored in [false, true] {
            for reason in Reason::ALL {
                let c = read_cell(counters, counter_index(slot, monitored, reason as u32))?;
                if c.packets != 0 {
                    snap.cells.push(Cell {
                        slot,
                        monitored,
                        reason,
                        packets: c.packets,
                        bytes: c.bytes,
                    });
                }
            }
        }
    }
    if let Some((slots, names)) = slots {
        for (ifindex, slot) in slots.iter().enumerate() {
            let slot = slot?;
            if slot != 0 {
                let raw = names.get(&slot, 0)?;
                let len = raw.iter().position(|b| *b == 0).unwrap_or(raw.len());
                let label = match std::str::from_utf8(&raw[..len]) {
                    Ok(n) if !n.is_empty() => n.to_string(),
                    _ => format!("ifindex {ifindex}"),
                };
                snap.interfaces.insert(slot, label);
            }
        }
    }
    Ok(snap)
}

pub fn snapshot_pinned(dir: &Path) -> Result<Snapshot> {
    let counters = super::maps::counters_pinned(dir)?;
    let maps = super::maps::PolicyMaps::open_pinned(dir)?;
    snapshot(&counters, Some((&maps.iface_slots, &maps.iface_names)))
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Totals {
    passed: (u64, u64),
    dropped: (u64, u64),
    would_drop: (u64, u64),
}

fn add(t: &mut (u64, u64), c: &Cell) {
    t.0 = t.0.wrapping_add(c.packets);
    t.1 = t.1.wrapping_add(c.bytes);
}

fn totals<'a>(cells: impl Iterator<Item = &'a Cell>) -> Totals {
    let mut t = Totals::default();
    for c in cells {
        if c.monitored {
            // Monitor mode passed it, and says it would have dropped it.
            add(&mut t.would_drop, c);
            add(&mut t.passed, c);
        } else if c.reason.is_drop() {
            add(&mut t.dropped, c);
        } else {
            add(&mut t.passed, c);
        }
    }
    t
}

fn action(c: &Cell) -> &'static str {
    if c.monitored {
        "would_drop"
    } else if c.reason.is_drop() {
        "drop"
    } else {
        "pass"
    }
}

fn reasons_json<'a>(cells: impl Iterator<Item = &'a Cell>) -> Value {
    let mut m: BTreeMap<String, (u64, u64, &'static str)> = BTreeMap::new();
    for c in cells {
        let key = if c.monitored {
            format!("{}(would_drop)", c.reason.name())
        } else {
            c.reason.name().to_string()
        };
        let e = m.entry(key).or_insert((0, 0, action(c)));
        e.0 = e.0.wrapping_add(c.packets);
        e.1 = e.1.wrapping_add(c.bytes);
    }
    Value::Object(
        m.into_iter()
            .map(|(k, (p, b, a))| (k, json!({"action": a, "packets": p, "bytes": b})))
            .collect(),
    )
}

impl Snapshot {
    pub fn slot_label(&self, slot: u32) -> String {
        match self.interfaces.get(&slot) {
            Some(n) => n.clone(),
            None if slot == 0 => "(other)".into(),
            None => format!("slot {slot}"),
        }
    }

    pub fn to_json(&self) -> Value {
        let t = totals(self.cells.iter());
        let mut ifaces = Vec::new();
        let mut slots: Vec<u32> = self.cells.iter().map(|c| c.slot).collect();
        slots.extend(self.interfaces.keys());
        slots.sort();
        slots.dedup();
        for slot in slots {
            let cells = || self.cells.iter().filter(move |c| c.slot == slot);
            let ti = totals(cells());
            ifaces.push(json!({
                "interface": self.slot_label(slot),
                "passed": ti.passed.0, "dropped": ti.dropped.0, "would_drop": ti.would_drop.0,
                "reasons": reasons_json(cells()),
            }));
        }
        json!({
            "passed": t.passed.0,
            "passed_bytes": t.passed.1,
            "dropped": t.dropped.0,
            "dropped_bytes": t.dropped.1,
            "would_drop": t.would_drop.0,
            "would_drop_bytes": t.would_drop.1,
            "reasons": reasons_json(self.cells.iter()),
            "interfaces": ifaces,
        })
    }

    pub fn to_table(&self) -> String {
        use std::fmt::Write as _;
        let t = totals(self.cells.iter());
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{:<16} {:<24} {:<11} {:>14} {:>16}",
            "INTERFACE", "REASON", "ACTION", "PACKETS", "BYTES"
        );
        let mut cells = self.cells.clone();
        cells.sort_by_key(|c| (c.slot, c.monitored, c.reason));
        for c in &cells {
            let _ = writeln!(
                s,
                "{:<16} {:<24} {:<11} {:>14} {:>16}",
                self.slot_label(c.slot),
                c.reason.name(),
                action(c),
                c.packets,
                c.bytes
            );
        }
        let _ = writeln!(
            s,
            "total: passed {} packets ({} bytes), dropped {} packets ({} bytes), would drop {} packets",
            t.passed.0, t.passed.1, t.dropped.0, t.dropped.1, t.would_drop.0
        );
        s
    }

    /// Packets counted for `reason` (real verdicts, all interfaces).
    pub fn packets(&self, reason: Reason, monitored: bool) -> u64 {
        self.cells
            .iter()
            .filter(|c| c.reason == reason && c.monitored == monitored)
            .map(|c| c.packets)
            .sum()
    }
}
