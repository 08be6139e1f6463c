//! SIP messages for tests, shaped like what real clients send.

/// An INVITE like a desk phone or SIPp sends, with SDP.
pub fn invite(from_user: &str, to_user: &str, host: &str, user_agent: &str) -> Vec<u8> {
    let sdp = "v=0\r\no=- 1 1 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0 8\r\na=rtpmap:0 PCMU/8000\r\n";
    format!(
        "INVITE sip:{to_user}@{host} SIP/2.0\r\n\
         Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-524287-1\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:{from_user}@{host}>;tag=4a5b6c\r\n\
         To: <sip:{to_user}@{host}>\r\n\
         Call-ID: 1-2-3@192.0.2.10\r\n\
         CSeq: 1 INVITE\r\n\
         Contact: <sip:{from_user}@192.0.2.10:5060>\r\n\
         User-Agent: {user_agent}\r\n\
         Content-Type: application/sdp\r\n\
         Content-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    )
    .into_bytes()
}

/// The OPTIONS probe SIPVicious' svmap sends.
pub fn svmap_options() -> Vec<u8> {
    b"OPTIONS sip:100@198.51.100.1 SIP/2.0\r\n\
Via: SIP/2.0/UDP 203.0.113.66:5060;branch=z9hG4bK-1234;rport\r\n\
Max-Forwards: 70\r\n\
To: \"sipvicious\"<sip:100@1.1.1.1>\r\n\
From: \"sipvicious\"<sip:100@1.1.1.1>;tag=6331323334\r\n\
User-Agent: friendly-scanner\r\n\
Call-ID: 123456789\r\n\
Contact: sip:100@203.0.113.66:5060\r\n\
CSeq: 1 OPTIONS\r\n\
Accept: application/sdp\r\n\
Content-Length: 0\r\n\r\n"
        .to_vec()
}

/// A request with exactly these header lines (name, value) and body; line
/// ends are `eol` ("\r\n" or "\n").
pub fn request(
    method: &str,
    uri: &str,
    headers: &[(&str, &str)],
    body: &str,
    eol: &str,
) -> Vec<u8> {
    let mut s = format!("{method} {uri} SIP/2.0{eol}");
    for (n, v) in headers {
        s.push_str(&format!("{n}: {v}{eol}"));
    }
    s.push_str(eol);
    s.push_str(body);
    s.into_bytes()
}

/// The headers of a typical call setup, User-Agent last but one.
pub fn call_headers<'a>(from: &'a str, to: &'a str, ua: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        (
            "Via",
            "SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-524287-1;rport",
        ),
        ("Max-Forwards", "70"),
        ("From", from),
        ("To", to),
        ("Call-ID", "a84b4c76e66710@192.0.2.10"),
        ("CSeq", "314159 INVITE"),
        ("Contact", "<sip:alice@192.0.2.10:5060>"),
        ("User-Agent", ua),
        ("Content-Length", "0"),
    ]
}

/// A REGISTER as phones send it: From and To are the same address of record.
pub fn register(user: &str, domain: &str, user_agent: &str) -> Vec<u8> {
    let aor = format!("\"{user}\" <sip:{user}@{domain}>");
    let from = format!("{aor};tag=83kd9");
    request(
        "REGISTER",
        &format!("sip:{domain}"),
        &[
            ("Via", "SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-77;rport"),
            ("Max-Forwards", "70"),
            ("From", &from),
            ("To", &aor),
            ("Call-ID", "reg-1@192.0.2.10"),
            ("CSeq", "1 REGISTER"),
            ("Contact", "<sip:alice@192.0.2.10:5060>;expires=3600"),
            ("User-Agent", user_agent),
            ("Expires", "3600"),
            ("Content-Length", "0"),
        ],
        "",
        "\r\n",
    )
}
