//! The configuration as packaged lists no interface: the daemon must then
//! attach nothing, say why, and start filtering once a reload names the
//! WAN interface. Needs root.

use std::time::Duration;

use sipguard_tests::{
    addresses::SCANNER4,
    harness::{wan::pbx_addr, wan_and_daemon, Receiver},
    sip,
};

#[test]
fn a_config_without_interfaces_idles_until_a_reload_names_one() {
    let Some((wan, mut d)) =
        wan_and_daemon("a_config_without_interfaces_idles_until_a_reload_names_one")
    else {
        return;
    };
    d.write_config("xdp_mode: native\non_exit: detach\n");
    d.launch_until(&[], "no interface configured");
    assert!(
        d.log_text().contains("nothing attached"),
        "the idle daemon must say that nothing is attached:\n{}",
        d.log_text()
    );
    assert!(
        !d.pin_dir().exists(),
        "an idle daemon must not load or pin anything"
    );
    let rx = Receiver::start(&wan.pbx, 5060);
    let scanner = wan.wan_socket(SCANNER4);
    let probe = sip::svmap_options();
    let send = |n: u64| {
        for _ in 0..n {
            scanner.send_to(&probe, pbx_addr(5060)).unwrap();
        }
    };
    send(5);
    assert_eq!(
        rx.wait_for(SCANNER4, 5, Duration::from_secs(2)),
        5,
        "with no filter attached the scanner's probes arrive"
    );

    // A reload that still names no interface keeps it idle.
    d.signal(libc::SIGHUP);
    d.wait_for_log_count("no interface configured", 2, Duration::from_secs(5));
    assert!(!d.pin_dir().exists());
    assert!(!wan.xdp_attached());

    d.write_config(&wan.config("xdp_mode: native\non_exit: detach\n"));
    d.signal(libc::SIGHUP);
    d.wait_for_log("ready:", Duration::from_secs(20));
    assert!(d
        .log_text()
        .contains(&format!("attached to {}", wan.pbx_if)));
    assert!(d.pin_dir().exists() && wan.xdp_attached());
    send(20);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        rx.count(SCANNER4),
        5,
        "after the reload the scanner is filtered"
    );
    assert!(d.stop().success());
    assert!(d.log_text().contains("detached from"), "{}", d.log_text());
}
