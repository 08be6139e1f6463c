//! `any_udp_port`: SIP requests to any UDP port are judged like SIP-port
//! traffic, recognised by their request line; other UDP to high ports and
//! TCP outside the port set pass untouched. BPF_PROG_TEST_RUN on the real
//! object, host verdict checked against it. Needs root.

use sipguard_tests::{
    fixtures::{any_port::*, check_case},
    require_root,
};

#[test]
fn any_udp_port_drops_scanners_on_high_ports() {
    if require_root("any_udp_port_drops_scanners_on_high_ports") {
        check_case(&cases()[0]);
    }
}

#[test]
fn without_any_udp_port_high_ports_pass() {
    if require_root("without_any_udp_port_high_ports_pass") {
        check_case(&cases()[1]);
    }
}

#[test]
fn any_udp_port_under_inspect_runs_the_sip_rules() {
    if require_root("any_udp_port_under_inspect_runs_the_sip_rules") {
        check_case(&under_inspect_case());
    }
}
