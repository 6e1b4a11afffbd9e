//! Attaching the classifier pair to an interface and taking it off again.
//!
//! TCX links (Linux 6.6+) are preferred: they coexist with other programs and die
//! with the process, so a `kill -9` leaves nothing behind. On older kernels, or
//! when asked, a clsact qdisc with two filters is used instead; those survive the
//! process, so stale filters named like ours are removed before attaching (no
//! double attach after a crash), and a clsact qdisc is deleted on detach only if
//! tlsmon created it and no other filter uses it.
//!
//! Before anything is attached, the interface's lock is taken (see
//! `interface_lock`): a daemon refuses an interface another daemon watches, and
//! filters named like ours count as stale only when no live tlsmon holds the lock.

use aya::{
    programs::{
        links::LinkOrder,
        tc::{self, NlOptions, SchedClassifierLinkId, TcAttachOptions},
        ProgramError, SchedClassifier, TcAttachType,
    },
    Ebpf,
};
use netlink_packet_route::{
    tc::{TcAttribute, TcHandle, TcMessage},
    RouteNetlinkMessage,
};
use tlsmon_common::{EGRESS_PROGRAM, INGRESS_PROGRAM};

use super::{
    error_chain,
    interface_lock::{self, InterfaceLock, LOCK_DIR},
    interfaces::Interface,
    rtnl::Rtnl,
    CaptureError, CaptureOptions,
};

/// How the classifier is attached to interfaces.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AttachMode {
    /// TCX where the kernel has it, clsact otherwise.
    #[default]
    Auto,
    /// TCX links only (Linux 6.6+).
    Tcx,
    /// clsact qdisc filters only (any kernel; survives a crash of tlsmon).
    Clsact,
}

/// How one interface ended up attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachedVia {
    /// Two TCX links.
    Tcx,
    /// Two clsact filters; `created_qdisc` when tlsmon added the qdisc itself.
    Clsact {
        /// tlsmon created the clsact qdisc (and so removes it on detach).
        created_qdisc: bool,
    },
}

/// The classifier pair attached to one interface.
#[derive(Debug)]
pub(crate) struct Attachment {
    pub(crate) interface: Interface,
    pub(crate) via: AttachedVia,
    ingress: SchedClassifierLinkId,
    egress: SchedClassifierLinkId,
    /// Held until the attachment is detached (dropped after the programs are off).
    _lock: Option<InterfaceLock>,
}

const HOOKS: [(TcAttachType, &str); 2] = [
    (TcAttachType::Ingress, INGRESS_PROGRAM),
    (TcAttachType::Egress, EGRESS_PROGRAM),
];

pub(crate) fn program_mut<'a>(
    ebpf: &'a mut Ebpf,
    name: &str,
) -> Result<&'a mut SchedClassifier, CaptureError> {
    ebpf.program_mut(name)
        .ok_or_else(|| CaptureError::Load(format!("program {name} missing from the object")))?
        .try_into()
        .map_err(|e: ProgramError| CaptureError::Load(error_chain(&e)))
}

fn attach_error(interface: &str, e: &dyn std::error::Error) -> CaptureError {
    let reason = error_chain(e);
    if reason.contains("Operation not permitted") {
        return CaptureError::PermissionDenied {
            action: format!("attaching to interface {interface}"),
            missing: "unknown (the kernel said EPERM)".into(),
        };
    }
    if reason.contains("No such device") {
        return CaptureError::InterfaceNotFound(interface.to_owned());
    }
    CaptureError::Attach {
        action: "attaching to",
        interface: interface.to_owned(),
        reason,
    }
}

/// Takes the interface's lock as `options` say, then attaches both programs to
/// `interface`.
pub(crate) fn attach(
    ebpf: &mut Ebpf,
    interface: &Interface,
    options: &CaptureOptions,
) -> Result<Attachment, CaptureError> {
    let claim = interface_lock::claim(LOCK_DIR.as_ref(), interface, options.interface_lock)?;
    // Filters of an earlier tlsmon that died without detaching, in either mode;
    // while another tlsmon is attached they may be its own.
    let removed_stale = if claim.others_attached {
        tracing::debug!(interface = %interface.name, "another tlsmon is attached; its filters stay");
        false
    } else {
        remove_stale_filters(&interface.name)
    };
    let attached = match options.attach_mode {
        AttachMode::Tcx => attach_tcx(ebpf, interface),
        AttachMode::Clsact => attach_clsact(ebpf, interface, removed_stale),
        AttachMode::Auto => match attach_tcx(ebpf, interface) {
            Err(CaptureError::Attach { reason, .. }) if tcx_unsupported(&reason) => {
                attach_clsact(ebpf, interface, removed_stale)
            }
            other => other,
        },
    };
    attached.map(|attachment| Attachment {
        _lock: claim.lock,
        ..attachment
    })
}

/// What a kernel without TCX answers to a TCX link request.
fn tcx_unsupported(reason: &str) -> bool {
    reason.contains("Invalid argument") || reason.contains("not supported")
}

/// Attaches ingress then egress with `options`; if egress fails, ingress is taken
/// off again so that an interface is never half watched.
fn attach_pair(
    ebpf: &mut Ebpf,
    interface: &Interface,
    options: impl Fn() -> TcAttachOptions,
) -> Result<(SchedClassifierLinkId, SchedClassifierLinkId), CaptureError> {
    let ingress = program_mut(ebpf, INGRESS_PROGRAM)?
        .attach_with_options(&interface.name, TcAttachType::Ingress, options())
        .map_err(|e| attach_error(&interface.name, &e))?;
    let egress = program_mut(ebpf, EGRESS_PROGRAM)?.attach_with_options(
        &interface.name,
        TcAttachType::Egress,
        options(),
    );
    match egress {
        Ok(egress) => Ok((ingress, egress)),
        Err(e) => {
            let _ = program_mut(ebpf, INGRESS_PROGRAM).map(|p| p.detach(ingress));
            Err(attach_error(&interface.name, &e))
        }
    }
}

fn attach_tcx(ebpf: &mut Ebpf, interface: &Interface) -> Result<Attachment, CaptureError> {
    // Last in the TCX chain: programs attached later (Cilium...) still run after
    // us because we return TCX_NEXT.
    let (ingress, egress) = attach_pair(ebpf, interface, || {
        TcAttachOptions::TcxOrder(LinkOrder::default())
    })?;
    Ok(Attachment {
        interface: interface.clone(),
        via: AttachedVia::Tcx,
        ingress,
        egress,
        _lock: None,
    })
}

fn attach_clsact(
    ebpf: &mut Ebpf,
    interface: &Interface,
    removed_stale: bool,
) -> Result<Attachment, CaptureError> {
    let created_qdisc = match tc::qdisc_add_clsact(&interface.name) {
        Ok(()) => true,
        Err(e) => {
            let reason = error_chain(&e);
            if !reason.contains("File exists") {
                return Err(attach_error(&interface.name, &e));
            }
            // A clsact that held nothing but our stale filters was left by an
            // earlier tlsmon: treat it as ours so that it goes away on detach.
            removed_stale && clsact_filter_count(interface.index).unwrap_or(1) == 0
        }
    };
    let (ingress, egress) = match attach_pair(ebpf, interface, || {
        TcAttachOptions::Netlink(NlOptions::default())
    }) {
        Ok(pair) => pair,
        Err(e) => {
            if created_qdisc {
                let _ = delete_clsact_if_unused(interface.index);
            }
            return Err(e);
        }
    };
    Ok(Attachment {
        interface: interface.clone(),
        via: AttachedVia::Clsact { created_qdisc },
        ingress,
        egress,
        _lock: None,
    })
}

/// Detaches both programs. An interface that vanished took its hooks with it, so
/// "no such device" counts as detached.
pub(crate) fn detach(ebpf: &mut Ebpf, attachment: Attachment) -> Result<(), CaptureError> {
    let mut failure = None;
    for (id, name) in [
        (attachment.ingress, INGRESS_PROGRAM),
        (attachment.egress, EGRESS_PROGRAM),
    ] {
        if let Err(e) = program_mut(ebpf, name)?.detach(id) {
            let reason = error_chain(&e);
            if !reason.contains("No such device") && failure.is_none() {
                failure = Some(reason);
            }
        }
    }
    if let AttachedVia::Clsact {
        created_qdisc: true,
    } = attachment.via
    {
        if let Err(e) = delete_clsact_if_unused(attachment.interface.index) {
            let reason = e.to_string();
            if !reason.contains("No such device") && failure.is_none() {
                failure = Some(reason);
            }
        }
    }
    match failure {
        None => Ok(()),
        Some(reason) => Err(CaptureError::Attach {
            action: "detaching from",
            interface: attachment.interface.name,
            reason,
        }),
    }
}

/// Removes clsact filters carrying our program names; true when any was found.
fn remove_stale_filters(interface: &str) -> bool {
    let mut removed = false;
    for (hook, name) in HOOKS {
        match tc::qdisc_detach_program(interface, hook, name) {
            Ok(()) => {
                tracing::info!(interface, program = name, "removed a stale tlsmon filter");
                removed = true;
            }
            // NotFound, or no clsact qdisc at all: nothing of ours is there.
            Err(e) => tracing::debug!(interface, "no stale filter: {}", error_chain(&e)),
        }
    }
    removed
}

const CLSACT_PARENTS: [TcHandle; 2] = [
    TcHandle {
        major: u16::MAX,
        minor: TcHandle::MIN_INGRESS,
    },
    TcHandle {
        major: u16::MAX,
        minor: TcHandle::MIN_EGRESS,
    },
];

/// Filters on the ingress and egress hooks of the clsact qdisc of `ifindex`.
pub(crate) fn clsact_filter_count(ifindex: u32) -> Result<usize, CaptureError> {
    let mut rtnl = Rtnl::open()?;
    let mut count = 0;
    for parent in CLSACT_PARENTS {
        let mut request = TcMessage::with_index(ifindex as i32);
        request.header.parent = parent;
        let replies = rtnl.dump(RouteNetlinkMessage::GetTrafficFilter(request))?;
        count += replies
            .iter()
            .filter(|r| matches!(r, RouteNetlinkMessage::NewTrafficFilter(_)))
            .count();
    }
    Ok(count)
}

/// True when `ifindex` has a clsact qdisc.
pub(crate) fn has_clsact(ifindex: u32) -> Result<bool, CaptureError> {
    let mut rtnl = Rtnl::open()?;
    let request = TcMessage::with_index(ifindex as i32);
    let replies = rtnl.dump(RouteNetlinkMessage::GetQueueDiscipline(request))?;
    Ok(replies.iter().any(|r| match r {
        RouteNetlinkMessage::NewQueueDiscipline(q) => {
            q.header.index == ifindex as i32
                && q.attributes
                    .iter()
                    .any(|a| matches!(a, TcAttribute::Kind(k) if k == "clsact"))
        }
        _ => false,
    }))
}

/// Deletes the clsact qdisc of `ifindex` unless a filter (someone else's) is on it.
fn delete_clsact_if_unused(ifindex: u32) -> Result<(), CaptureError> {
    if clsact_filter_count(ifindex)? != 0 || !has_clsact(ifindex)? {
        return Ok(());
    }
    let mut request = TcMessage::with_index(ifindex as i32);
    request.header.parent = TcHandle::CLSACT;
    request.header.handle = TcHandle {
        major: u16::MAX,
        minor: 0,
    };
    request
        .attributes
        .push(TcAttribute::Kind("clsact".to_owned()));
    Rtnl::open()?.execute(RouteNetlinkMessage::DelQueueDiscipline(request))
}
