//! What the kernel has attached to an interface, asked independently of tlsmon's
//! own bookkeeping: `tc filter show` for clsact filters, BPF_PROG_QUERY (through
//! aya) for TCX links, which Debian 12's bpftool 7.1 predates and cannot list.

use aya::programs::{SchedClassifier, TcAttachType};

use crate::netns::Netns;

/// (tlsmon_ingress, tlsmon_egress) clsact filters on `dev` in `ns`.
pub fn tc_filters_of_ours(ns: &Netns, dev: &str) -> (usize, usize) {
    let mut text = String::new();
    for hook in ["ingress", "egress"] {
        let out = ns.exec_unchecked(&["tc", "filter", "show", "dev", dev, hook]);
        text.push_str(&String::from_utf8_lossy(&out.stdout));
    }
    (
        text.matches("name tlsmon_ingress").count(),
        text.matches("name tlsmon_egress").count(),
    )
}

/// (tlsmon_ingress, tlsmon_egress) TCX programs on either hook of `dev` in `ns`.
pub fn tcx_programs_of_ours(ns: &Netns, dev: &str) -> (usize, usize) {
    let dev = dev.to_owned();
    ns.run_inside(move || {
        let mut names = Vec::new();
        for hook in [TcAttachType::Ingress, TcAttachType::Egress] {
            let (_, programs) = SchedClassifier::query_tcx(&dev, hook)
                .unwrap_or_else(|e| panic!("querying TCX programs of {dev}: {e}"));
            names.extend(
                programs
                    .iter()
                    .map(|p| p.name_as_str().unwrap_or_default().to_owned()),
            );
        }
        let count = |n: &str| names.iter().filter(|x| x.as_str() == n).count();
        (count("tlsmon_ingress"), count("tlsmon_egress"))
    })
}
