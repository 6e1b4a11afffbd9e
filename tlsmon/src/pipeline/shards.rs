//! The flow table stage split across worker threads: each connection belongs to
//! one worker, chosen by a hash of its (device, lo, hi), so reassembly and
//! parsing (the heavy part) use several cores while every connection's packets
//! stay in one table, in order.
//!
//! The caller hands over batches of segments. Every worker sees the time of
//! every segment of a batch (not only its own), so its clock moves exactly as a
//! single table's would, and a handshake times out at the same packet. What the
//! workers decide comes back tagged with the packet (step) that decided it and
//! is merged in that order: a handshake decided by a segment comes where a single
//! table would have put it; handshakes that time out at the same packet in
//! different workers are ordered by their start (time, client, server), which
//! does not depend on the workers. Flows still open at the end of a capture come
//! out in table order, which was never defined (a hash map's).
//!
//! Each worker holds at most `max_flows / workers` connections, so the bound on
//! the whole stage stays `max_flows`.

use std::hash::BuildHasher;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;

use crate::pipeline::flow_table::{
    ClientHelloSeen, Decided, FlowStats, FlowTable, FlowTableOptions,
};
use crate::source::segment::{ConnectionKey, Segment, Timestamp};

/// Most workers, whatever the machine: beyond this the single stages after
/// the table (and reading the input) are the bottleneck.
pub const MAX_WORKERS: usize = 8;

/// Jobs queued per worker before the caller waits: the batch being worked on
/// and the next one.
const QUEUE_DEPTH: usize = 2;

/// Workers of `run` and `watch` unless told otherwise: none besides the loop's
/// own thread. Live batches are small (what arrived in one drain interval), and
/// handing each to workers and back cost more than it saved at ordinary rates
/// (TLS 1.3 handshakes from s_time: 63 µs of daemon CPU per handshake with two
/// workers, 40 µs without; BENCHMARKS.md, "Daemon throughput (issue 16)").
/// `--workers N` when one core is not enough.
pub const LIVE_DEFAULT_WORKERS: usize = 1;

/// The default number of workers over capture files: one per CPU, at most
/// [`MAX_WORKERS`].
pub fn default_workers() -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, MAX_WORKERS)
}

/// What a worker is asked to do.
enum Job {
    /// Segments of one batch: the time of each of its segments (for every worker)
    /// and this worker's own segments with their offsets in the batch.
    Batch {
        times: Arc<[Timestamp]>,
        first_step: u64,
        own: Vec<(u32, Segment)>,
    },
    /// Wall time moved on (live).
    Advance(Timestamp),
    /// The input ended: decide up to this many open flows.
    FinishSome(usize),
}

/// What the workers hand back, in one table's order.
// Both variants are large and each is moved once through a reused Vec; boxing
// one would add an allocation per handshake.
#[allow(clippy::large_enum_variant)]
pub enum Output {
    /// A ClientHello was read (collected for the forwarding linker only).
    ClientHello(ClientHelloSeen),
    /// A handshake was decided.
    Decided(Decided),
}

/// When, in the merged order, an output comes within its step: as one table's
/// pipeline hands them on after a push, ClientHellos first, then what timed out
/// as the clock reached the step's time, then what the segment decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    /// A ClientHello read from the step's segment.
    Hello,
    /// Timed out as the clock reached the step's time (before its segment).
    Clock,
    /// Decided by the step's segment.
    Segment,
}

/// What a worker did with one job.
struct Done {
    outputs: Vec<(u64, Phase, Output)>,
    dropped_preambles: Vec<(ConnectionKey, u32)>,
    stats: FlowStats,
    tracked: usize,
    /// After [`Job::FinishSome`]: flows remain.
    more: bool,
}

/// One worker thread and its two channels.
struct Worker {
    jobs: Option<SyncSender<Job>>,
    done: Receiver<Done>,
    thread: Option<JoinHandle<()>>,
    stats: FlowStats,
    tracked: usize,
}

/// The flow table stage over several workers.
pub struct Shards {
    workers: Vec<Worker>,
    hasher: foldhash::quality::RandomState,
    /// Jobs sent to every worker whose results were not collected yet.
    in_flight: usize,
    next_step: u64,
    stats: FlowStats,
    dropped_preambles: Vec<(ConnectionKey, u32)>,
    merged: Vec<(u64, Phase, Output)>,
}

impl Shards {
    /// `workers` (at least 2) tables, each holding at most `max_flows / workers`
    /// connections.
    pub fn new(options: &FlowTableOptions, workers: usize, collect_hellos: bool) -> Self {
        let count = workers.max(1);
        let mut per_worker = options.clone();
        per_worker.max_flows = (options.max_flows / count).max(1);
        let workers = (0..count)
            .map(|index| {
                let mut table = FlowTable::new(per_worker.clone());
                if collect_hellos {
                    table.collect_client_hellos();
                }
                let (jobs, job_queue) = sync_channel(QUEUE_DEPTH);
                let (results, done) = sync_channel(QUEUE_DEPTH);
                let thread = std::thread::Builder::new()
                    .name(format!("tlsmon-flows-{index}"))
                    .spawn(move || work(table, job_queue, results))
                    .expect("spawning a flow table worker");
                Worker {
                    jobs: Some(jobs),
                    done,
                    thread: Some(thread),
                    stats: FlowStats::default(),
                    tracked: 0,
                }
            })
            .collect();
        Shards {
            workers,
            hasher: foldhash::quality::RandomState::default(),
            in_flight: 0,
            next_step: 0,
            stats: FlowStats::default(),
            dropped_preambles: Vec::new(),
            merged: Vec::new(),
        }
    }

    /// The worker of a connection.
    fn worker_of(&self, segment: &Segment) -> usize {
        let (lo, hi) = if segment.src <= segment.dst {
            (segment.src, segment.dst)
        } else {
            (segment.dst, segment.src)
        };
        let hash = self.hasher.hash_one((&segment.device, lo, hi));
        // Multiply-shift: the high bits of the hash pick the worker evenly.
        ((u128::from(hash) * self.workers.len() as u128) >> 64) as usize
    }

    /// Sends a batch to the workers (emptying `segments`). Results of earlier
    /// batches are collected into `out` until at most `in_flight_limit` batches
    /// are still being worked on.
    pub fn push_batch(
        &mut self,
        segments: &mut Vec<Segment>,
        in_flight_limit: usize,
        out: &mut Vec<Output>,
    ) {
        if segments.is_empty() {
            return;
        }
        let times: Arc<[Timestamp]> = segments.iter().map(|s| s.ts).collect();
        let mut own: Vec<Vec<(u32, Segment)>> =
            (0..self.workers.len()).map(|_| Vec::new()).collect();
        for (offset, segment) in segments.drain(..).enumerate() {
            own[self.worker_of(&segment)].push((offset as u32, segment));
        }
        let first_step = self.next_step;
        self.next_step += times.len() as u64;
        for (worker, own) in self.workers.iter_mut().zip(own) {
            send(
                worker,
                Job::Batch {
                    times: times.clone(),
                    first_step,
                    own,
                },
            );
        }
        self.in_flight += 1;
        while self.in_flight > in_flight_limit {
            self.collect_one(out);
        }
    }

    /// Every worker's clock moves to `now`; what timed out goes to `out`.
    pub fn advance_clock(&mut self, now: Timestamp, out: &mut Vec<Output>) {
        self.collect_all(out);
        self.broadcast(|| Job::Advance(now));
        self.collect_one(out);
    }

    /// Decides up to `limit` open flows per worker; true while some remain.
    pub fn finish_some(&mut self, limit: usize, out: &mut Vec<Output>) -> bool {
        self.collect_all(out);
        self.broadcast(|| Job::FinishSome(limit));
        self.collect_one(out)
    }

    /// Waits for every batch still being worked on.
    pub fn collect_all(&mut self, out: &mut Vec<Output>) {
        while self.in_flight > 0 {
            self.collect_one(out);
        }
    }

    /// Connections that began with a preamble and ended without a record.
    pub fn take_dropped_preambles(&mut self) -> Vec<(ConnectionKey, u32)> {
        std::mem::take(&mut self.dropped_preambles)
    }

    /// How many workers.
    pub fn workers(&self) -> usize {
        self.workers.len()
    }

    /// The workers' counters summed, as of the last collected job.
    pub fn stats(&self) -> &FlowStats {
        &self.stats
    }

    /// Connections tracked by all workers, as of the last collected job.
    pub fn tracked(&self) -> usize {
        self.workers.iter().map(|w| w.tracked).sum()
    }

    fn broadcast(&mut self, job: impl Fn() -> Job) {
        for worker in &mut self.workers {
            send(worker, job());
        }
        self.in_flight += 1;
    }

    /// Collects the oldest job from every worker and appends its decisions, in
    /// merged order, to `out`; true if some worker still has open flows.
    fn collect_one(&mut self, out: &mut Vec<Output>) -> bool {
        let mut more = false;
        self.merged.clear();
        for worker in &mut self.workers {
            let done = receive(worker);
            more |= done.more;
            self.merged.extend(done.outputs);
            self.dropped_preambles.extend(done.dropped_preambles);
            worker.stats = done.stats;
            worker.tracked = done.tracked;
        }
        self.in_flight = self.in_flight.saturating_sub(1);
        // Stable: one worker's decisions of one step keep their order.
        self.merged.sort_by(|a, b| {
            (a.0, a.1)
                .cmp(&(b.0, b.1))
                .then_with(|| match (&a.2, &b.2) {
                    (Output::Decided(x), Output::Decided(y)) if a.1 == Phase::Clock => {
                        start_of(x).cmp(&start_of(y))
                    }
                    _ => std::cmp::Ordering::Equal,
                })
        });
        out.extend(self.merged.drain(..).map(|(_, _, output)| output));
        let mut stats = FlowStats::default();
        for worker in &self.workers {
            stats += &worker.stats;
        }
        self.stats = stats;
        more
    }
}

/// What orders handshakes that timed out at the same packet in different workers.
fn start_of(d: &Decided) -> impl Ord + '_ {
    let e = &d.event;
    (
        e.ts,
        e.client_ip,
        e.client_port,
        e.server_ip,
        e.server_port,
        &e.device,
    )
}

fn send(worker: &mut Worker, job: Job) {
    let sent = worker
        .jobs
        .as_ref()
        .is_some_and(|jobs| jobs.send(job).is_ok());
    if !sent {
        worker_died(worker);
    }
}

fn receive(worker: &mut Worker) -> Done {
    match worker.done.recv() {
        Ok(done) => done,
        Err(_) => worker_died(worker),
    }
}

/// A worker's channel closed: it panicked (a bug). The panic is passed on, as it
/// would have been without workers.
fn worker_died(worker: &mut Worker) -> ! {
    worker.jobs = None;
    if let Some(thread) = worker.thread.take() {
        if let Err(panic) = thread.join() {
            std::panic::resume_unwind(panic);
        }
    }
    panic!("a flow table worker stopped");
}

impl Drop for Shards {
    fn drop(&mut self) {
        for worker in &mut self.workers {
            worker.jobs = None;
        }
        for worker in &mut self.workers {
            if let Some(thread) = worker.thread.take() {
                // Its panic, if any, was passed on already or is lost with the
                // pipeline that is being dropped.
                let _ = thread.join();
            }
        }
    }
}

/// Moves the decisions in `out` to `outputs`, tagged with their step and phase.
fn tag(outputs: &mut Vec<(u64, Phase, Output)>, step: u64, phase: Phase, out: &mut Vec<Decided>) {
    outputs.extend(out.drain(..).map(|d| (step, phase, Output::Decided(d))));
}

/// A worker's loop: one job at a time until the caller hangs up.
fn work(mut table: FlowTable, jobs: Receiver<Job>, results: SyncSender<Done>) {
    let mut out = Vec::new();
    let mut hellos = Vec::new();
    for job in jobs {
        let mut outputs = Vec::new();
        let mut more = false;
        match job {
            Job::Batch {
                times,
                first_step,
                own,
            } => {
                let mut own = own.into_iter().peekable();
                for (offset, &ts) in times.iter().enumerate() {
                    let step = first_step + offset as u64;
                    if ts > table.clock() {
                        table.advance_clock(ts, &mut out);
                        tag(&mut outputs, step, Phase::Clock, &mut out);
                    }
                    if let Some((_, segment)) = own.next_if(|(o, _)| *o as usize == offset) {
                        table.push(segment, &mut out);
                        table.take_client_hellos(&mut hellos);
                        outputs.extend(
                            hellos
                                .drain(..)
                                .map(|h| (step, Phase::Hello, Output::ClientHello(h))),
                        );
                        tag(&mut outputs, step, Phase::Segment, &mut out);
                    }
                }
            }
            Job::Advance(now) => {
                table.advance_clock(now, &mut out);
                tag(&mut outputs, 0, Phase::Clock, &mut out);
            }
            Job::FinishSome(limit) => {
                more = table.finish_some(limit, &mut out);
                tag(&mut outputs, 0, Phase::Segment, &mut out);
            }
        }
        let done = Done {
            outputs,
            dropped_preambles: table.take_dropped_preambles(),
            stats: table.stats().clone(),
            tracked: table.tracked(),
            more,
        };
        if results.send(done).is_err() {
            return;
        }
    }
}
