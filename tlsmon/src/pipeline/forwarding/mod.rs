//! The same handshake on two devices: a host that routes, bridges or proxies sees
//! one ClientHello (the same `random`) arrive on one interface and leave on another.
//! [`ForwardingLinker`] links the two sightings and records on both events
//! `forwarded: {in_device, out_device, changes}`.
//!
//! Rules, chosen so that no connection can link or unlink another's handshake:
//! - the flow table tracks only real connections (the kernel verifies the SYN-ACK), so
//!   a sighting is always a real connection's ClientHello;
//! - a link is an *arrival* (ingress) followed within [`LINK_WINDOW`] by a *departure*
//!   (egress) with the same random on another connection; a departure never links to
//!   an arrival that came after it, so a ClientHello this host sends itself cannot be
//!   claimed by someone who replays its random toward the host;
//! - each random links once: the first arrival waits, a second arrival with a random
//!   that is already waiting or linked is not linked (counted), and a departure with
//!   an already linked random is not linked (counted). A replay therefore arrives
//!   after the real ClientHello and changes nothing for it. (An attacker on the path
//!   *before* this host could send the random first; tlsmon cannot tell them apart.)
//!
//! When the arrival's handshake is decided before its ClientHello left (a client that
//! closes at once) on a path (device and server address) that has forwarded before,
//! its event is held for [`HOLD_GRACE`] so that a late departure still links; if none
//! comes, the event says `out_device: null`: the ClientHello arrived on a forwarding
//! path and never left. Everything is bounded ([`MAX_WAITING`], [`MAX_WAITING_BYTES`],
//! [`MAX_MARKS`], [`MAX_HELD`], [`MAX_PATHS`]); what a bound cuts is counted in
//! [`ForwardingStats`].

mod changes;

#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::event::Forwarded;
use crate::pipeline::flow_table::{ClientHelloSeen, Decided};
use crate::source::segment::{ConnectionKey, Device, PacketDirection, Timestamp};

use changes::Offered;
pub use changes::MAX_CHANGES;

/// A departure links to an arrival at most this long after it.
pub const LINK_WINDOW: Duration = Duration::from_secs(5);
/// How long an arrival decided before its ClientHello left is held, on a path that
/// forwarded before, for its departure.
pub const HOLD_GRACE: Duration = Duration::from_secs(2);
/// Arrivals waiting for their departure, at most; the oldest is dropped beyond.
pub const MAX_WAITING: usize = 16_384;
/// Bytes the waiting arrivals' offered lists may take; the oldest is dropped beyond.
pub const MAX_WAITING_BYTES: usize = 8 << 20;
/// Connections marked as waiting or linked, at most (each until its event is out).
pub const MAX_MARKS: usize = 65_536;
/// Events held at once for a late departure.
pub const MAX_HELD: usize = 4096;
/// Forwarding paths (arrival device, server address) remembered.
pub const MAX_PATHS: usize = 1024;

/// Counters of the linker; what its bounds cut included.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ForwardingStats {
    /// ClientHellos linked across two devices.
    pub linked: u64,
    /// Arrivals whose ClientHello did not leave within the window on a forwarding path.
    pub not_forwarded: u64,
    /// ClientHellos whose random was already waiting or linked: not linked.
    pub random_reused: u64,
    /// Arrivals dropped from the window by its bounds before they could link.
    pub waiting_evicted: u64,
    /// Sightings not followed because [`MAX_MARKS`] connections were marked.
    pub marks_full: u64,
    /// Events not held for a late departure because [`MAX_HELD`] were held.
    pub hold_full: u64,
}

/// A connection as the flow table's [`Decided`] names it.
type FlowRef = (ConnectionKey, Option<u32>);

/// An arrival waiting for its ClientHello to leave.
struct Waiting {
    id: u64,
    flow: FlowRef,
    device: Device,
    server: SocketAddr,
    ts: Timestamp,
    offered: Offered,
    cost: usize,
    /// Its event, when decided before the departure on a forwarding path.
    held: Option<Box<Decided>>,
}

/// What the window knows of one random.
enum Slot {
    Waiting(Box<Waiting>),
    /// Linked; kept until the window passes so that a reuse is recognised.
    Linked {
        id: u64,
    },
}

impl Slot {
    fn id(&self) -> u64 {
        match self {
            Slot::Waiting(w) => w.id,
            Slot::Linked { id } => *id,
        }
    }
}

/// What a connection's event will carry.
enum Mark {
    /// Its arrival waits under this random.
    Waiting([u8; 32]),
    /// Linked.
    Linked(Arc<Forwarded>),
    /// The window passed without a departure; `never_left` when on a forwarding path.
    Unlinked { never_left: bool },
}

/// Links ClientHellos seen arriving on one device and leaving on another.
#[derive(Default)]
pub struct ForwardingLinker {
    slots: HashMap<[u8; 32], Slot>,
    /// (arrival time, random, id) in arrival order, for expiry and eviction.
    order: VecDeque<(Timestamp, [u8; 32], u64)>,
    waiting: usize,
    waiting_bytes: usize,
    marks: HashMap<FlowRef, Mark>,
    /// (release time, random, id) of held events, in release order.
    held: VecDeque<(Timestamp, [u8; 32], u64)>,
    held_count: usize,
    paths: HashSet<(Device, SocketAddr)>,
    paths_order: VecDeque<(Device, SocketAddr)>,
    next_id: u64,
    clock: Timestamp,
    stats: ForwardingStats,
}

impl ForwardingLinker {
    /// An empty linker.
    pub fn new() -> Self {
        Self::default()
    }

    /// Counters so far.
    pub fn stats(&self) -> &ForwardingStats {
        &self.stats
    }

    /// A ClientHello the flow table read; may release a held event into `out`.
    pub fn sighting(&mut self, seen: ClientHelloSeen, out: &mut Vec<Decided>) {
        self.clock = self.clock.max(seen.ts);
        match seen.direction {
            PacketDirection::Ingress => self.arrived(seen, out),
            PacketDirection::Egress => self.left(seen, out),
            // Capture files: no hooks, nothing to link.
            PacketDirection::Unknown => {}
        }
    }

    /// A decided handshake: goes to `out` with its `forwarded` filled in, or is held
    /// for a late departure.
    pub fn decided(&mut self, mut decided: Decided, out: &mut Vec<Decided>) {
        let flow = (decided.key.clone(), decided.client_seq);
        match self.marks.remove(&flow) {
            None => out.push(decided),
            Some(Mark::Linked(forwarded)) => {
                decided.event.forwarded = Some((*forwarded).clone());
                out.push(decided);
            }
            Some(Mark::Unlinked { never_left }) => {
                if never_left {
                    decided.event.forwarded = Some(never_left_record(&decided.key.device));
                    self.stats.not_forwarded += 1;
                }
                out.push(decided);
            }
            Some(Mark::Waiting(random)) => {
                let Some(Slot::Waiting(waiting)) = self.slots.get_mut(&random) else {
                    out.push(decided);
                    return;
                };
                let on_path = self
                    .paths
                    .contains(&(waiting.device.clone(), waiting.server));
                if on_path && self.held_count < MAX_HELD {
                    self.held
                        .push_back((self.clock + HOLD_GRACE, random, waiting.id));
                    waiting.held = Some(Box::new(decided));
                    self.held_count += 1;
                } else {
                    if on_path {
                        self.stats.hold_full += 1;
                    }
                    self.remove_waiting(&random);
                    out.push(decided);
                }
            }
        }
    }

    /// Moves time forward: held events whose grace passed, and arrivals whose window
    /// passed, are settled.
    pub fn advance_clock(&mut self, now: Timestamp, out: &mut Vec<Decided>) {
        self.clock = self.clock.max(now);
        while let Some(&(release, random, id)) = self.held.front() {
            if release > self.clock {
                break;
            }
            self.held.pop_front();
            self.release_held(&random, id, out);
        }
        while let Some(&(ts, random, id)) = self.order.front() {
            if ts + LINK_WINDOW > self.clock {
                break;
            }
            self.order.pop_front();
            self.settle(&random, id, out);
        }
    }

    /// The input ended: every held event goes out (its ClientHello never left).
    pub fn finish(&mut self, out: &mut Vec<Decided>) {
        while let Some((_, random, id)) = self.held.pop_front() {
            self.release_held(&random, id, out);
        }
    }

    fn arrived(&mut self, seen: ClientHelloSeen, out: &mut Vec<Decided>) {
        let random = seen.hello.random;
        if self.slots.contains_key(&random) {
            self.stats.random_reused += 1;
            return;
        }
        if self.marks.len() >= MAX_MARKS {
            self.stats.marks_full += 1;
            return;
        }
        let offered = Offered::of(&seen.hello);
        let cost = offered.cost();
        // The order also holds entries of arrivals already decided until their window
        // passes; it is bounded too, so a burst of short handshakes cannot grow it.
        while self.waiting >= MAX_WAITING
            || self.order.len() >= 2 * MAX_WAITING
            || (self.waiting > 0 && self.waiting_bytes + cost > MAX_WAITING_BYTES)
        {
            let Some((_, oldest, id)) = self.order.pop_front() else {
                break;
            };
            if matches!(self.slots.get(&oldest), Some(Slot::Waiting(w)) if w.id == id) {
                self.stats.waiting_evicted += 1;
                self.drop_waiting(&oldest, out);
            } else {
                self.settle(&oldest, id, out);
            }
        }
        let id = self.next_id;
        self.next_id += 1;
        let flow = (seen.key, seen.client_seq);
        self.marks.insert(flow.clone(), Mark::Waiting(random));
        self.order.push_back((seen.ts, random, id));
        self.waiting += 1;
        self.waiting_bytes += cost;
        self.slots.insert(
            random,
            Slot::Waiting(Box::new(Waiting {
                id,
                device: flow.0.device.clone(),
                flow,
                server: seen.server,
                ts: seen.ts,
                offered,
                cost,
                held: None,
            })),
        );
    }

    fn left(&mut self, seen: ClientHelloSeen, out: &mut Vec<Decided>) {
        let random = seen.hello.random;
        let waiting = match self.slots.get(&random) {
            // The host's own connection, or one whose arrival was not seen.
            None => return,
            Some(Slot::Linked { .. }) => {
                self.stats.random_reused += 1;
                return;
            }
            Some(Slot::Waiting(w)) if seen.ts.saturating_sub(w.ts) > LINK_WINDOW => return,
            Some(Slot::Waiting(w)) => w.id,
        };
        let Some(Slot::Waiting(arrival)) = self.slots.insert(random, Slot::Linked { id: waiting })
        else {
            return;
        };
        self.waiting -= 1;
        self.waiting_bytes -= arrival.cost;
        let forwarded = Forwarded {
            in_device: arrival.device.name().to_string(),
            out_device: Some(seen.key.device.name().to_string()),
            changes: changes::between(&arrival.offered, &Offered::of(&seen.hello)),
        };
        self.stats.linked += 1;
        self.remember_path(arrival.device.clone(), arrival.server);
        let forwarded = Arc::new(forwarded);
        match arrival.held {
            Some(mut held) => {
                held.event.forwarded = Some((*forwarded).clone());
                self.held_count -= 1;
                out.push(*held);
            }
            None => {
                self.marks
                    .insert(arrival.flow, Mark::Linked(forwarded.clone()));
            }
        }
        if self.marks.len() >= MAX_MARKS {
            self.stats.marks_full += 1;
            return;
        }
        self.marks
            .insert((seen.key, seen.client_seq), Mark::Linked(forwarded));
    }

    /// The window (or the hold) of `random`'s entry `id` has passed: a waiting arrival
    /// did not leave; a linked random is forgotten. Stale entries are ignored.
    fn settle(&mut self, random: &[u8; 32], id: u64, out: &mut Vec<Decided>) {
        let Some(slot) = self.slots.get(random) else {
            return;
        };
        if slot.id() != id {
            return;
        }
        match slot {
            Slot::Linked { .. } => {
                self.slots.remove(random);
            }
            Slot::Waiting(w) => {
                let never_left = self.paths.contains(&(w.device.clone(), w.server));
                let Some(Slot::Waiting(w)) = self.slots.remove(random) else {
                    return;
                };
                self.waiting -= 1;
                self.waiting_bytes -= w.cost;
                match w.held {
                    Some(mut held) => {
                        self.held_count -= 1;
                        if never_left {
                            held.event.forwarded = Some(never_left_record(&w.device));
                            self.stats.not_forwarded += 1;
                        }
                        out.push(*held);
                    }
                    None => {
                        if let Some(mark) = self.marks.get_mut(&w.flow) {
                            *mark = Mark::Unlinked { never_left };
                        }
                    }
                }
            }
        }
    }

    /// The hold of `random`'s entry `id` has passed (or the input ended): its event
    /// goes out. Nothing when it was linked in the meantime.
    fn release_held(&mut self, random: &[u8; 32], id: u64, out: &mut Vec<Decided>) {
        if matches!(self.slots.get(random), Some(Slot::Waiting(w)) if w.id == id && w.held.is_some())
        {
            self.settle(random, id, out);
        }
    }

    /// Drops a waiting arrival pushed out by a bound: its event says nothing.
    fn drop_waiting(&mut self, random: &[u8; 32], out: &mut Vec<Decided>) {
        let Some(Slot::Waiting(w)) = self.slots.remove(random) else {
            return;
        };
        self.waiting -= 1;
        self.waiting_bytes -= w.cost;
        match w.held {
            Some(held) => {
                self.held_count -= 1;
                out.push(*held);
            }
            None => {
                if let Some(mark) = self.marks.get_mut(&w.flow) {
                    *mark = Mark::Unlinked { never_left: false };
                }
            }
        }
    }

    /// Removes the waiting arrival of a handshake decided off any forwarding path.
    fn remove_waiting(&mut self, random: &[u8; 32]) {
        if let Some(Slot::Waiting(w)) = self.slots.remove(random) {
            self.waiting -= 1;
            self.waiting_bytes -= w.cost;
        }
    }

    fn remember_path(&mut self, device: Device, server: SocketAddr) {
        if self.paths.contains(&(device.clone(), server)) {
            return;
        }
        if self.paths_order.len() >= MAX_PATHS {
            if let Some(oldest) = self.paths_order.pop_front() {
                self.paths.remove(&oldest);
            }
        }
        self.paths.insert((device.clone(), server));
        self.paths_order.push_back((device, server));
    }
}

/// `forwarded` of a ClientHello that arrived on a forwarding path and never left.
fn never_left_record(device: &Device) -> Forwarded {
    Forwarded {
        in_device: device.name().to_string(),
        out_device: None,
        changes: Vec::new(),
    }
}
