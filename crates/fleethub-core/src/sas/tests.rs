use super::*;
use crate::pct;

const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const OTHER_KEY: &str = "Z3JvdXAta2V5LWZvci1rYXQtMDEyMzQ1Njc4OWFiY2Q=";
const SE: u64 = 1_700_000_000;

const PY_DPS: &str = "SharedAccessSignature sr=0ne00000A0A%2Fregistrations%2Fdev-01&sig=TZwRA%2B1qelNKRfgMGZEsX5o47klUW43n2e0rGmb%2FIfc%3D&se=1700000000";
const NODE_DPS: &str = "SharedAccessSignature sr=0ne00000A0A/registrations/dev-01&sig=ZeRkQEOqInZLzCuPlswuVViMMGMqyet%2FCtRlRwaovMo%3D&skn=registration&se=1700000000";
const PY_HUB: &str = "SharedAccessSignature sr=myhub.example.net%2Fdevices%2Fdev-01&sig=QpmS35%2F4z5OsTKHmu%2FkFkVK6Anmhn6vZaBupfDWcZJw%3D&se=1700000000";
const NODE_SVC: &str = "SharedAccessSignature sr=myhub.example.net&sig=Pmsb0ctK7umJNP8uL8067cvnGnRfYIUzxZecelz8i1I%3D&skn=iothubowner&se=1700000000";

const DPS_RES: &str = "0ne00000A0A/registrations/dev-01";
const HUB_RES: &str = "myhub.example.net/devices/dev-01";

fn parse(t: &str) -> SasToken {
    SasToken::parse(t).unwrap_or_else(|e| panic!("{t:?}: {e}"))
}

fn malformed_msg(t: &str) -> String {
    match SasToken::parse(t) {
        Err(SasError::Malformed(m)) => m,
        other => panic!("{t:?}: expected Malformed, got {other:?}"),
    }
}

// ---- docs/protocol-notes.md, "SAS tokens": test vectors ----

#[test]
fn python_dps_vector() {
    let t = parse(PY_DPS);
    assert_eq!(t.sr_raw, "0ne00000A0A%2Fregistrations%2Fdev-01");
    assert_eq!(t.resource(), DPS_RES);
    assert_eq!(t.se_raw, "1700000000");
    assert_eq!(t.expiry, SE);
    assert_eq!(t.skn, None);
    assert_eq!(t.sig.len(), 32);
    assert_eq!(t.verify_signature(KEY), Ok(true));
    assert!(t.covers(DPS_RES));
    assert!(t.covers("0ne00000a0a/registrations/DEV-01"));
    assert_eq!(build_token(DPS_RES, KEY, SE, None).unwrap(), PY_DPS);
}

#[test]
fn node_dps_vector() {
    let t = parse(NODE_DPS);
    assert_eq!(t.sr_raw, DPS_RES);
    assert_eq!(t.resource(), DPS_RES);
    assert_eq!(t.skn.as_deref(), Some("registration"));
    assert_eq!(t.expiry, SE);
    assert_eq!(t.verify_signature(KEY), Ok(true));
    assert!(t.covers(DPS_RES));
    // Reproduce: Node signs the raw sr and orders sr, sig, skn, se.
    let sig = sign(KEY, DPS_RES, SE).unwrap();
    let rebuilt = format!(
        "SharedAccessSignature sr={DPS_RES}&sig={}&skn=registration&se={SE}",
        pct::encode_upper(sig.as_bytes())
    );
    assert_eq!(rebuilt, NODE_DPS);
}

#[test]
fn python_hub_vector() {
    let t = parse(PY_HUB);
    assert_eq!(t.resource(), HUB_RES);
    assert_eq!(t.skn, None);
    assert_eq!(t.verify_signature(KEY), Ok(true));
    assert!(t.covers(HUB_RES));
    assert!(t.covers("MyHub.Example.Net/devices/dev-01"));
    assert!(!t.covers("myhub.example.net/devices/dev-02"));
    assert_eq!(build_token(HUB_RES, KEY, SE, None).unwrap(), PY_HUB);
    assert_eq!(
        sign(KEY, "myhub.example.net%2Fdevices%2Fdev-01", SE).unwrap(),
        "QpmS35/4z5OsTKHmu/kFkVK6Anmhn6vZaBupfDWcZJw="
    );
}

#[test]
fn node_service_vector() {
    let t = parse(NODE_SVC);
    assert_eq!(t.sr_raw, "myhub.example.net");
    assert_eq!(t.skn.as_deref(), Some("iothubowner"));
    assert_eq!(t.verify_signature(KEY), Ok(true));
    assert!(t.covers("myhub.example.net"));
    // A hub-level token covers every resource below the hub.
    assert!(t.covers(HUB_RES));
    assert!(!t.covers("myhub.example.network/devices/x"));
    // build_token orders sr, sig, se, skn; same fields otherwise.
    let built = build_token("myhub.example.net", KEY, SE, Some("iothubowner")).unwrap();
    assert_eq!(
        built,
        "SharedAccessSignature sr=myhub.example.net&sig=Pmsb0ctK7umJNP8uL8067cvnGnRfYIUzxZecelz8i1I%3D&se=1700000000&skn=iothubowner"
    );
    assert_eq!(parse(&built), t);
}

#[test]
fn all_vectors_fail_with_wrong_key() {
    for v in [PY_DPS, NODE_DPS, PY_HUB, NODE_SVC] {
        assert_eq!(parse(v).verify_signature(OTHER_KEY), Ok(false), "{v}");
    }
}

#[test]
fn bad_key_is_an_error() {
    let t = parse(PY_DPS);
    assert_eq!(
        t.verify_signature("nope!"),
        Err(SasError::BadKey(KeyError::NotBase64))
    );
    assert_eq!(
        t.verify_signature("AAAA"),
        Err(SasError::BadKey(KeyError::BadLength { len: 3 }))
    );
    assert!(sign("AAAA", "x", 1).is_err());
    assert!(build_token("x", "AAAA", 1, None).is_err());
}

// ---- SDK encoding variants ----

#[test]
fn c_sdk_lowercase_encoding_verifies() {
    let sr = "0ne00000A0A%2fregistrations%2fdev-01";
    let sig = sign(KEY, sr, SE).unwrap();
    let sig_enc = pct::encode_lower(sig.as_bytes());
    assert!(sig_enc.contains("%2b") || sig_enc.contains("%2f") || sig_enc.contains("%3d"));
    let token = format!("SharedAccessSignature sr={sr}&sig={sig_enc}&se={SE}&skn=registration");
    let t = parse(&token);
    assert_eq!(t.sr_raw, sr);
    assert_eq!(t.resource(), DPS_RES);
    assert_eq!(t.verify_signature(KEY), Ok(true));
    assert_eq!(t.verify_signature(OTHER_KEY), Ok(false));
    assert!(t.covers(DPS_RES));
}

#[test]
fn c_sdk_space_separators_verify() {
    let sig = sign(KEY, HUB_RES, SE).unwrap();
    let token = format!(
        "SharedAccessSignature sr={HUB_RES} sig={} se={SE}",
        pct::encode_lower(sig.as_bytes())
    );
    let t = parse(&token);
    assert_eq!(t.verify_signature(KEY), Ok(true));
    assert!(t.covers(HUB_RES));
}

#[test]
fn aziot_lowercased_raw_sr_verifies_and_covers_mixed_case() {
    let expected = "MyHub.example.net/devices/Dev-01";
    let sr = expected.to_lowercase();
    let sig = sign(KEY, &sr, SE).unwrap();
    let token = format!(
        "SharedAccessSignature sr={sr}&sig={}&se={SE}",
        pct::encode_upper(sig.as_bytes())
    );
    let t = parse(&token);
    assert_eq!(t.verify_signature(KEY), Ok(true));
    assert!(t.covers(expected));
    assert!(t.covers("myhub.example.net/devices/dev-01"));
    assert!(!t.covers("MyHub.example.net/devices/Dev-02"));
}

#[test]
fn signature_over_reencoded_sr_variants_verifies() {
    // Client signed the decoded form but sent it encoded.
    let sig = sign(KEY, DPS_RES, SE).unwrap();
    let t = parse(&format!(
        "SharedAccessSignature sr=0ne00000A0A%2Fregistrations%2Fdev-01&sig={}&se={SE}",
        pct::encode_upper(sig.as_bytes())
    ));
    assert_eq!(t.verify_signature(KEY), Ok(true));

    // Client signed the uppercase-encoded form but a proxy lowercased it.
    let sig = sign(KEY, "0ne00000A0A%2Fregistrations%2Fdev-01", SE).unwrap();
    let t = parse(&format!(
        "SharedAccessSignature sr=0ne00000A0A%2fregistrations%2fdev-01&sig={}&se={SE}",
        pct::encode_upper(sig.as_bytes())
    ));
    assert_eq!(t.verify_signature(KEY), Ok(true));

    // Client signed the lowercase-encoded form, sent it raw.
    let sig = sign(KEY, "0ne00000A0A%2fregistrations%2fdev-01", SE).unwrap();
    let t = parse(&format!(
        "SharedAccessSignature sr={DPS_RES}&sig={}&se={SE}",
        pct::encode_upper(sig.as_bytes())
    ));
    assert_eq!(t.verify_signature(KEY), Ok(true));
}

#[test]
fn tampered_fields_fail() {
    let base = parse(PY_HUB);
    let mut t = base.clone();
    t.se_raw = "1700000001".into();
    t.expiry += 1;
    assert_eq!(t.verify_signature(KEY), Ok(false));
    let mut t = base.clone();
    t.sr_raw = "myhub.example.net%2Fdevices%2Fdev-02".into();
    assert_eq!(t.verify_signature(KEY), Ok(false));
    let mut t = base.clone();
    t.sig[0] ^= 1;
    assert_eq!(t.verify_signature(KEY), Ok(false));
    let mut t = base;
    t.sig.truncate(16);
    assert_eq!(t.verify_signature(KEY), Ok(false));
}

#[test]
fn build_token_encodes_everything_but_unreserved() {
    let tok = build_token("hub/devices/a(b)!'*:=", KEY, 5, Some("my policy")).unwrap();
    assert!(
        tok.starts_with("SharedAccessSignature sr=hub%2Fdevices%2Fa%28b%29%21%27%2A%3A%3D&sig=")
    );
    assert!(tok.ends_with("&se=5&skn=my%20policy"));
    let t = parse(&tok);
    assert_eq!(t.resource(), "hub/devices/a(b)!'*:=");
    assert_eq!(t.skn.as_deref(), Some("my policy"));
    assert_eq!(t.verify_signature(KEY), Ok(true));
    assert!(t.covers("hub/devices/a(b)!'*:="));
    // Empty skn is omitted.
    assert!(!build_token("x", KEY, 5, Some("")).unwrap().contains("skn"));
}

// ---- parsing ----

#[test]
fn empty_skn_is_none() {
    let t = parse(&format!("{PY_DPS}&skn="));
    assert_eq!(t.skn, None);
    assert_eq!(t.verify_signature(KEY), Ok(true));
}

#[test]
fn field_order_whitespace_and_unknown_keys_are_tolerated() {
    let t = parse(PY_HUB);
    let sig = PY_HUB
        .split("sig=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap();
    let reordered = format!(
        "  \tSharedAccessSignature   se=1700000000&foo=bar&&sig={sig}&sr=myhub.example.net%2Fdevices%2Fdev-01&x=\n"
    );
    assert_eq!(parse(&reordered), t);
}

#[test]
fn value_split_at_first_equals() {
    // Unpadded base64 plus an unknown key with '=' in the value.
    let t = parse("SharedAccessSignature sr=a&sig=AAAA&se=1&k=v=w");
    assert_eq!(t.sig, vec![0, 0, 0]);
    let t = parse("SharedAccessSignature sr=a&sig=AA==&se=1");
    assert_eq!(t.sig, vec![0]);
    let t = parse("SharedAccessSignature sr=a&sig=AA%3d%3D&se=1");
    assert_eq!(t.sig, vec![0]);
    let t = parse("SharedAccessSignature sr=a&sig=AA&se=1");
    assert_eq!(t.sig, vec![0]);
}

#[test]
fn plus_in_sig_is_not_a_space() {
    // Python vector has %2B; a raw '+' must decode the same way.
    let raw = PY_DPS.replace("%2B", "+");
    assert_eq!(parse(&raw).sig, parse(PY_DPS).sig);
    assert_eq!(parse(&raw).verify_signature(KEY), Ok(true));
}

#[test]
fn missing_prefix() {
    for t in [
        "",
        "   ",
        "sr=a&sig=AA==&se=1",
        "SharedAccessSignaturesr=a&sig=AA==&se=1",
        "sharedaccesssignature sr=a&sig=AA==&se=1",
        "Bearer xyz",
        "SharedAccessSignature",
    ] {
        let m = malformed_msg(t);
        assert!(m.contains("missing prefix"), "{t:?}: {m}");
    }
}

#[test]
fn missing_or_empty_fields() {
    assert_eq!(
        malformed_msg("SharedAccessSignature sig=AA==&se=1"),
        "missing field 'sr' (the resource URI)"
    );
    assert_eq!(
        malformed_msg("SharedAccessSignature sr=a&se=1"),
        "missing field 'sig' (the signature)"
    );
    assert_eq!(
        malformed_msg("SharedAccessSignature sr=a&sig=AA=="),
        "missing field 'se' (the expiry)"
    );
    assert_eq!(
        malformed_msg("SharedAccessSignature sr=&sig=AA==&se=1"),
        "field 'sr' (the resource URI) is empty"
    );
    assert!(malformed_msg("SharedAccessSignature sr=a&sig=&se=1").contains("'sig'"));
    assert!(malformed_msg("SharedAccessSignature sr=a&sig=AA==&se=").contains("'se'"));
    assert!(malformed_msg("SharedAccessSignature  & ").contains("missing field 'sr'"));
}

#[test]
fn bad_se() {
    for se in ["abc", "+1", "-1", "1.5", "0x10", "1e9"] {
        let m = malformed_msg(&format!("SharedAccessSignature sr=a&sig=AA==&se={se}"));
        assert!(m.contains("is not a number"), "{se}: {m}");
    }
    let m = malformed_msg("SharedAccessSignature sr=a&sig=AA==&se=99999999999999999999999");
    assert!(m.contains("too large"), "{m}");
    assert_eq!(parse("SharedAccessSignature sr=a&sig=AA==&se=0").expiry, 0);
}

#[test]
fn bad_sig() {
    for sig in ["!!!!", "AA%ZZ", "A", "QpmS35_4z5Os"] {
        let m = malformed_msg(&format!("SharedAccessSignature sr=a&sig={sig}&se=1"));
        assert!(m.contains("sig is not valid base64"), "{sig}: {m}");
        assert!(!m.contains(sig), "message must not echo the signature");
    }
}

#[test]
fn duplicate_and_valueless_fields() {
    assert_eq!(
        malformed_msg("SharedAccessSignature sr=a&sr=b&sig=AA==&se=1"),
        "field 'sr' appears more than once"
    );
    assert!(malformed_msg("SharedAccessSignature sr=a&sig=AA==&se=1&se=2").contains("'se'"));
    let m = malformed_msg("SharedAccessSignature sr=a&sig=AA==&se=1&garbage");
    assert!(m.contains("'garbage' has no '='"), "{m}");
}

#[test]
fn error_display() {
    assert_eq!(
        SasError::Expired {
            expired_secs_ago: 40
        }
        .to_string(),
        "token expired 40 s ago: check the device clock"
    );
    assert_eq!(
        SasError::Malformed("x".into()).to_string(),
        "malformed SAS token: x"
    );
    assert!(
        SasError::from(KeyError::NotBase64)
            .to_string()
            .contains("not valid base64")
    );
}

// ---- expiry ----

#[test]
fn expiry_checks() {
    let t = parse(PY_DPS);
    assert_eq!(t.check_expiry(SE - 100, 0), Ok(()));
    assert_eq!(t.check_expiry(SE, 0), Ok(()));
    assert_eq!(
        t.check_expiry(SE + 40, 0),
        Err(SasError::Expired {
            expired_secs_ago: 40
        })
    );
    assert_eq!(
        t.check_expiry(SE + 40, 30),
        Err(SasError::Expired {
            expired_secs_ago: 40
        })
    );
    assert_eq!(t.check_expiry(SE + 40, 40), Ok(()));
    assert_eq!(
        t.check_expiry(SE + 1, 0).unwrap_err().to_string(),
        "token expired 1 s ago: check the device clock"
    );
    let far = parse(&format!(
        "SharedAccessSignature sr=a&sig=AA==&se={}",
        u64::MAX
    ));
    assert_eq!(far.check_expiry(u64::MAX, u64::MAX), Ok(()));
    let zero = parse("SharedAccessSignature sr=a&sig=AA==&se=0");
    assert_eq!(
        zero.check_expiry(u64::MAX, 0),
        Err(SasError::Expired {
            expired_secs_ago: u64::MAX
        })
    );
}

// ---- covers ----

fn token_for(sr: &str) -> SasToken {
    parse(&format!("SharedAccessSignature sr={sr}&sig=AA==&se=1"))
}

#[test]
fn covers_is_segment_prefix() {
    let t = token_for("hub/devices/d1");
    assert!(t.covers("hub/devices/d1"));
    assert!(t.covers("HUB/Devices/D1"));
    assert!(t.covers("hub/devices/d1/modules/m1"));
    assert!(!t.covers("hub/devices/d10"));
    assert!(!t.covers("hub/devices"));
    assert!(!t.covers("hub"));
    assert!(!t.covers("other/devices/d1"));
    assert!(!t.covers(""));
}

#[test]
fn covers_handles_trailing_slashes_and_encoding() {
    assert!(token_for("hub/devices/d1/").covers("hub/devices/d1"));
    assert!(token_for("hub/devices/d1").covers("hub/devices/d1/"));
    assert!(token_for("hub%2Fdevices%2Fd1%2F").covers("hub/devices/d1"));
    assert!(token_for("hub%2fdevices%2fd1").covers("hub/devices/d1/modules/m1"));
    assert!(!token_for("/").covers("hub"));
    assert!(!token_for("%2F").covers("hub"));
}

#[test]
fn covers_ids_with_percent() {
    // Python encodes '%' as %25; Node DPS sends it raw.
    assert!(token_for("hub%2Fdevices%2Fa%2541").covers("hub/devices/a%41"));
    assert!(token_for("hub/devices/a%41").covers("hub/devices/a%41"));
}

#[test]
fn covers_is_ascii_only_case_folding() {
    // KELVIN SIGN must not fold to 'k'.
    assert!(!token_for("hub/devices/\u{212A}").covers("hub/devices/k"));
}

// ---- describe_resource_mismatch ----

#[test]
fn describe_mismatch_messages() {
    let t = parse(PY_HUB);
    let m = describe_resource_mismatch(&t, "myhub.example.net/devices/dev-02");
    assert!(
        m.starts_with(
            "token signed for resource 'myhub.example.net/devices/dev-01' but the request is for 'myhub.example.net/devices/dev-02'"
        ),
        "{m}"
    );
    assert!(m.contains("only the last segment differs"), "{m}");
    assert!(
        m.contains("(sr as sent: 'myhub.example.net%2Fdevices%2Fdev-01')"),
        "{m}"
    );

    let m = describe_resource_mismatch(&t, "otherhub.example.net/devices/dev-01");
    assert!(m.contains("wrong host name or ID scope"), "{m}");

    let m = describe_resource_mismatch(&token_for("hub/devices/d1"), "hub/devices/d10");
    assert!(m.contains("segment boundary"), "{m}");
    assert!(!m.contains("sr as sent"), "{m}");

    let m = describe_resource_mismatch(&token_for("hub/devices/d1/modules/m"), "hub/devices/d1");
    assert!(m.contains("narrower"), "{m}");

    let m = describe_resource_mismatch(&t, HUB_RES);
    assert!(m.contains("covers"), "{m}");
}

#[test]
fn describe_never_leaks_signature_and_escapes_control_chars() {
    let t = parse(PY_HUB);
    let m = describe_resource_mismatch(&t, "x");
    assert!(!m.contains("QpmS35"));
    assert!(!m.contains(KEY));
    let evil = token_for("hub%0Adevices%0Dx");
    let m = describe_resource_mismatch(&evil, "hub/devices/x\n");
    assert!(!m.contains('\n') && !m.contains('\r'), "{m}");
    let long = token_for(&"a".repeat(5000));
    assert!(describe_resource_mismatch(&long, "b").len() < 1000);
}

/// A token whose `sig=` is missing (the percent-encoded signature is a field of its own) names
/// the field with a few characters only, never the signature.
#[test]
fn malformed_field_shows_no_signature() {
    let sig = "q6Gm0Ek2Nf4rZ8yT1bXcV3sLwP9hJ5uD7aQeR0tYiOk%3D";
    let m = malformed_msg(&format!("SharedAccessSignature sr=a&{sig}&se=1"));
    assert!(m.contains("'q6Gm0Ek2…' has no '='"), "{m}");
    assert!(!m.contains(&sig[..9]), "{m}");
}

/// A token as Python azure-eventhub signs it (`_pyamqp/utils.py` `generate_sas_token`: the
/// key's text is the HMAC key).
#[test]
fn event_hubs_text_key_vector() {
    let key = "GjGFQGGLyuR9k1vIeYsyv1i/IDCMysEC8eIC/pJnv/Y=";
    let t = parse(
        "SharedAccessSignature sr=sb%3A%2F%2Fhub.example.test%2Fhub&sig=9nalDO44E1LZDo5XKQK51LVmw96Enrd5RWVlKre2wvU%3D&se=1800000000&skn=service",
    );
    assert!(t.verify_signature_text_key(key));
    assert!(!t.verify_signature(key).unwrap());
    assert!(!t.verify_signature_text_key("AAAA"));
    assert_eq!(t.resource(), "sb://hub.example.test/hub");
}
