//! The configuration as packaged lists no interface: the daemon must then
//! attach nothing, say why, and start filtering once a reload names the
//! WAN interface. Needs root.

use std::time::Duration;

use sipguard_tests::{
    opslab::{Lab, SCANNER},
    require_root, sip,
};

#[test]
fn a_config_without_interfaces_idles_until_a_reload_names_one() {
    if !require_root("a_config_without_interfaces_idles_until_a_reload_names_one") {
        return;
    }
    let mut lab = Lab::new("idle");
    std::fs::write(&lab.config, "xdp_mode: native\non_exit: detach\n").unwrap();
    lab.start_until("no interface configured");
    assert!(
        lab.log().contains("nothing attached"),
        "the idle daemon must say that nothing is attached:\n{}",
        lab.log()
    );
    assert!(
        !lab.pin_dir().exists(),
        "an idle daemon must not load or pin anything"
    );
    let rx = lab.receiver(5060);
    let scanner = lab.sender_socket(SCANNER);
    let probe = sip::svmap_options();
    let send = |n: u64| {
        for _ in 0..n {
            scanner.send_to(&probe, Lab::router_addr(5060)).unwrap();
        }
    };
    send(5);
    assert_eq!(
        rx.wait_for(SCANNER, 5, Duration::from_secs(2)),
        5,
        "with no filter attached the scanner's probes arrive"
    );

    // A reload that still names no interface keeps it idle.
    lab.signal(libc::SIGHUP);
    std::thread::sleep(Duration::from_millis(300));
    assert!(!lab.pin_dir().exists());

    lab.write_config("on_exit: detach\n");
    lab.signal(libc::SIGHUP);
    lab.wait_log("ready:", Duration::from_secs(20));
    assert!(lab.log().contains(&format!("attached to {}", lab.r_if)));
    assert!(lab.pin_dir().exists());
    send(20);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        rx.count(SCANNER),
        5,
        "after the reload the scanner is filtered"
    );
    let log = lab.stop_with(libc::SIGTERM);
    assert!(log.contains("detached from"), "{log}");
}
