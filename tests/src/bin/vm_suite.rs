//! The suite that runs inside each kernel of the matrix (tests/src/vm.rs
//! boots it; tests/tests/kernel_matrix.rs reads its report): loads the real
//! programs once, reports what the verifier made of each, and pushes every
//! fixture case through that one load. Every line meant for the host starts
//! with `SIPGUARD-VM:`; the last one says whether everything passed.

use std::{process::ExitCode, time::Instant};

use sipguard::testrun::Sandbox;
use sipguard_common::{
    ANY_PORT_PROGRAM_NAME, INSPECT_PROGRAM_NAME, LEARN_PROGRAM_NAME, PROGRAM_NAME,
};
use sipguard_tests::{fixtures, vm::RESULT_PREFIX};

/// How many failing rows of one case are printed in full.
const SHOWN_FAILURES: usize = 20;

fn report(line: &str) {
    println!("{RESULT_PREFIX} {line}");
}

fn main() -> ExitCode {
    let cases = fixtures::all_cases();
    let start = Instant::now();
    let mut sb = match Sandbox::new(&cases[0].policy) {
        Ok(sb) => sb,
        Err(e) => {
            report(&format!("load result=fail error={:?}", format!("{e:#}")));
            report("suite=fixtures result=fail");
            return ExitCode::FAILURE;
        }
    };
    report(&format!(
        "load result=pass seconds={:.1}",
        start.elapsed().as_secs_f64()
    ));
    // The registrar learner loads on first use; load it here so its count
    // is reported with the others.
    let learner_start = Instant::now();
    match sb.run_learner(&cases[0].rows[0].frame) {
        Ok(_) => report(&format!(
            "learner-load result=pass seconds={:.1}",
            learner_start.elapsed().as_secs_f64()
        )),
        Err(e) => report(&format!(
            "learner-load result=fail error={:?}",
            format!("{e:#}")
        )),
    }
    for prog in [
        PROGRAM_NAME,
        INSPECT_PROGRAM_NAME,
        ANY_PORT_PROGRAM_NAME,
        LEARN_PROGRAM_NAME,
    ] {
        match sb.verified_instructions_of(prog) {
            Ok(Some(n)) => report(&format!("verifier prog={prog} insns={n}")),
            Ok(None) => report(&format!("verifier prog={prog} insns=unknown")),
            Err(e) => report(&format!(
                "verifier prog={prog} error={:?}",
                format!("{e:#}")
            )),
        }
    }
    let mut failed = 0;
    let mut rows = 0;
    let run_start = Instant::now();
    for case in &cases {
        let failures = case.run(&mut sb);
        rows += case.rows.len();
        let name = case.name.replace(' ', "-");
        for f in failures.iter().take(SHOWN_FAILURES) {
            report(&format!("row case={name} result=fail detail={f:?}"));
        }
        report(&format!(
            "case name={name} rows={} failures={} result={}",
            case.rows.len(),
            failures.len(),
            if failures.is_empty() { "pass" } else { "fail" }
        ));
        if !failures.is_empty() {
            failed += 1;
        }
    }
    report(&format!(
        "suite=fixtures cases={} rows={rows} failed_cases={failed} seconds={:.1} result={}",
        cases.len(),
        run_start.elapsed().as_secs_f64(),
        if failed == 0 { "pass" } else { "fail" }
    ));
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
