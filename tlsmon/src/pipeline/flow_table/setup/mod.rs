//! Connection setup as the peers actually number it: which of several SYN-ACKs
//! (with different initial sequence numbers) a direction's bytes follow, and a
//! ClientHello carried in the client's SYN (TCP Fast Open), held until the server
//! accepts it.
//!
//! Both are decided by acknowledgments, so a packet nobody answered decides
//! nothing: a SYN's bytes become part of the stream only once the server
//! acknowledges them (its SYN-ACK with TFO, or a later ACK when it refused them
//! and the client sent them again), so a spoofed SYN carrying a ClientHello never
//! becomes a handshake. Everything here is a few words per flow, plus at most one
//! held SYN, whose captured bytes are bounded by the reassembly buffer.

use crate::source::segment::Segment;

/// Where one direction's sequence numbers start: the ISN of its SYN or SYN-ACK.
///
/// A server may answer one SYN with SYN-ACKs of different ISNs (a second SYN-ACK
/// after a retransmitted SYN, a middlebox); the client acknowledges one of them and
/// the server's bytes follow that one. So the latest ISN is the choice until the
/// peer acknowledges one (then that one stays), and the one before it is kept in
/// case the peer acknowledges it instead.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Numbering {
    isn: Option<u32>,
    other: Option<u32>,
    acknowledged: bool,
}

impl Numbering {
    /// A SYN (or SYN-ACK) of this direction with sequence number `isn`.
    pub fn on_syn(&mut self, isn: u32) {
        match self.isn {
            None => self.isn = Some(isn),
            Some(current) if current == isn => {}
            Some(_) if self.acknowledged => self.other = Some(isn),
            Some(current) => {
                self.other = Some(current);
                self.isn = Some(isn);
            }
        }
    }

    /// The peer acknowledged `ack`: if that is one of the SYNs seen, its numbering
    /// is the one the connection uses.
    pub fn on_peer_ack(&mut self, ack: u32) {
        let acknowledges = |isn: Option<u32>| isn.is_some_and(|isn| isn.wrapping_add(1) == ack);
        if acknowledges(self.isn) {
            self.acknowledged = true;
        } else if acknowledges(self.other) {
            std::mem::swap(&mut self.isn, &mut self.other);
            self.acknowledged = true;
        }
    }

    /// The chosen ISN, handed to the direction's stream when it starts.
    pub fn take(&mut self) -> Option<u32> {
        let isn = self.isn.take();
        *self = Numbering::default();
        isn
    }
}

/// What the peer's acknowledgment says about bytes held from a SYN.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum SynDataVerdict {
    /// The acknowledgment covers them: the server took them.
    Accepted,
    /// It acknowledges the SYN alone: the server dropped them (the client sends
    /// them again after the handshake, as ordinary bytes).
    Refused,
    /// Neither (not an acknowledgment of this SYN).
    Undecided,
}

/// How the peer's acknowledgment `ack` judges the bytes carried by `syn`.
pub(super) fn judge_syn_data(syn: &Segment, ack: u32) -> SynDataVerdict {
    let data_start = syn.seq.wrapping_add(1);
    let data_end = syn.end_seq().wrapping_add(1);
    if ack == data_start {
        SynDataVerdict::Refused
    } else if ack.wrapping_sub(data_end) as i32 >= 0 && ack.wrapping_sub(data_start) as i32 > 0 {
        SynDataVerdict::Accepted
    } else {
        SynDataVerdict::Undecided
    }
}

/// `syn` to hold until the server answers it: captured bytes beyond `max_bytes`
/// are turned into cut bytes (a hole of known size) rather than held.
pub(super) fn held_syn(syn: &Segment, max_bytes: usize) -> Box<Segment> {
    let mut held = syn.clone();
    if held.payload.len() > max_bytes {
        let cut = held.payload.len() - max_bytes;
        held.payload.truncate(max_bytes);
        held.payload.shrink_to_fit();
        held.cut = held.cut.saturating_add(cut as u32);
    }
    Box::new(held)
}

#[cfg(test)]
mod tests;
