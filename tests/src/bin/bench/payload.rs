//! SIP INVITEs for the benchmark classes and the flood.

/// A desk-phone INVITE. `scanner` swaps the User-Agent for SIPVicious'
/// `friendly-scanner` and nothing else, so both take the same path up to
/// the User-Agent. With `size > 0` the message is exactly `size` bytes and
/// the User-Agent is its last header (the inspector's worst case: every
/// header before it is looked at); with 0 it is a typical INVITE with SDP.
pub fn invite(scanner: bool, size: usize) -> Vec<u8> {
    let ua = if scanner {
        "friendly-scanner"
    } else {
        "Yealink SIP-T46S 66.86.0.15"
    };
    if size == 0 {
        return sipguard_tests::sip::invite("alice", "100", "pbx.example.com", ua);
    }
    let head = "INVITE sip:100@pbx.example.com SIP/2.0\r\n\
                Via: SIP/2.0/UDP 198.51.100.7;branch=z9hG4bK1\r\n\
                Max-Forwards: 70\r\n\
                From: <sip:alice@pbx.example.com>;tag=4a5b\r\n\
                To: <sip:100@pbx.example.com>\r\n\
                Call-ID: 6f1e2d@198.51.100.7\r\n\
                CSeq: 1 INVITE\r\n\
                Contact: <sip:alice@198.51.100.7:5060>\r\n\
                Content-Length: 0\r\n";
    // Filler headers of a typical length; the last one absorbs the rest.
    let ua_line = format!("User-Agent: {ua}\r\n");
    let mut msg = head.to_string();
    let fixed = head.len() + ua_line.len() + 2;
    assert!(
        size >= fixed + 16,
        "an INVITE of {size} bytes cannot hold its headers"
    );
    let mut left = size - fixed;
    let mut n = 0;
    while left > 0 {
        let line_len = if left > 96 + 72 { 72 } else { left };
        let name = format!("X-Pad-{n}: ");
        let fill = line_len - name.len() - 2;
        msg.push_str(&name);
        msg.push_str(&"a".repeat(fill));
        msg.push_str("\r\n");
        left -= line_len;
        n += 1;
    }
    msg.push_str(&ua_line);
    msg.push_str("\r\n");
    debug_assert_eq!(msg.len(), size);
    msg.into_bytes()
}
