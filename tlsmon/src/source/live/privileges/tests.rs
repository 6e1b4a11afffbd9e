use super::*;

#[test]
fn root_lacks_nothing_and_nobody_lacks_everything() {
    assert!(missing_capabilities(u64::MAX).is_empty());
    assert_eq!(
        missing_capabilities(0),
        vec!["CAP_NET_ADMIN", "CAP_BPF", "CAP_PERFMON"]
    );
    let sys_admin_and_net_admin = (1 << CAP_SYS_ADMIN) | (1 << CAP_NET_ADMIN);
    assert!(missing_capabilities(sys_admin_and_net_admin).is_empty());
}
