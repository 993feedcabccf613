//! Known-answer tests (RFC 7515 appendix A, RFC 8037 appendix A.4, signatures made by OpenSSL
//! with the test fixtures), negative cases, and on native targets a differential test against
//! jsonwebtoken's RustCrypto backend.

use super::PublicKey;
use base64::Engine;
use jsonwebtoken::Algorithm;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

fn b64(s: &str) -> Vec<u8> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .unwrap()
}

/// Splits a compact JWS into (signing input, signature bytes).
fn jws(token: &str) -> (&str, Vec<u8>) {
    let (input, sig) = token.rsplit_once('.').unwrap();
    (input, b64(sig))
}

// RFC 7515 appendix A.2 (RFC 7517 appendix A.1 key).
pub(super) const A2_N: &str = "ofgWCuLjybRlzo0tZWJjNiuSfb4p4fAkd_wWJcyQoTbji9k0l8W26mPddxHmfHQp-Vaw-4qPCJrcS2mJPMEzP1Pt0Bm4d4QlL-yRT-SFd2lZS-pCgNMsD1W_YpRPEwOWvG6b32690r2jZ47soMZo9wGzjb_7OMg0LOL-bSf63kpaSHSXndS5z5rexMdbBYUsLA9e-KXBdQOS-UTo7WTBEMa2R2CapHg665xsmtdVMTBQY4uDZlxvb3qCo5ZwKh9kG4LT6_I5IhlJH7aGhyxXFvUK-DWNmoudF8NAco9_h9iaGNj8q2ethFkMLs91kzk2PAcDTW9gb54h4FRWyuXpoQ";
const A2_JWS: &str = "eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ.cC4hiUPoj9Eetdgtv3hF80EGrhuB__dzERat0XF9g2VtQgr9PJbu3XOiZj5RZmh7AAuHIm4Bh-0Qc_lF5YKt_O8W2Fp5jujGbds9uJdbF9CUAr7t1dnZcAcQjbKBYNX4BAynRFdiuB--f_nZLgrnbyTyWzO75vRK5h6xBArLIARNPvkSjtQBMHlb1L07Qe7K0GarZRmB_eSN9383LcOLn6_dO--xi12jzDwusC-eOkHWEsqtFZESc6BfI7noOPqvhJ1phCnvWh6IeYI2w9QOYEUipUTI8np6LbgGY9Fs98rqVt5AXLIhWkWywlVmtVrBp0igcN_IoypGlUPQGe77Rw";
// RFC 7515 appendix A.3.
const A3_X: &str = "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU";
const A3_Y: &str = "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0";
const A3_JWS: &str = "eyJhbGciOiJFUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ.DtEhU3ljbEg8L38VWAfUAqOyKAM6-Xx-F4GawxaepmXFCgfTjDxw5djxLa8ISlSApmWQxfKTUJqPP3-Kg6NU1Q";
// RFC 7515 appendix A.1.
const A1_K: &str =
    "AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow";
const A1_JWS: &str = "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ.dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
// RFC 8037 appendix A.4.
const ED_X: &str = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";
const ED_JWS: &str = "eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc.hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg";

// testkit/fixtures: rsa-a and ec-a of jwks.json; signatures made with `openssl dgst -sign`
// (PSS: rsa_pss_saltlen:digest, rsa_mgf1_md the same hash; ES256: DER converted to r || s).
pub(super) const FIXTURE_N: &str = "xtS3qNTlS9N49wokgDkHGG-nHYbXLpIc6Qx5gOvfP_IIbYzzpOzhKuBPeDySD9CKYJeBC4bEMN4rdlbY63t2IhQKBPxzPZI_xMH0mzp9S_D8151Xe-z2Xj0fGDzGYS9WeII5pgZVoNs3xLawaf-wgNGXvsFea5GXMNwbFZB2biOSfYaJ6PuYfxDfMVAkTfYYFTypOumgeVJz6W8SdizKBPBN9S1kLBo5LH7_MdiBcv_oDat2XpeJU8yBG4FZn2kdA6_BU1_yxcmp8WxRDUcs7_L08UAk2Z8v-e1TS_vOAq9fDNTZS8qMWpD6lNThqnBtSjFtT8NOKGRqI1gwIRiVLw";
const FIXTURE_EC_X: &str = "YS63qACNtTxmaVWPI7-RSvgU5JvAI9yhM3z_uIyd3XM";
const FIXTURE_EC_Y: &str = "a6AdiO2YyZcW_bLydGoVzboZiwxfgYwMngCG6kRw7Yg";
const OPENSSL_INPUT: &str = "eyJhbGciOiJQUzI1NiJ9.eyJzdWIiOiJvcGVuc3NsIn0";
const OPENSSL: [(Algorithm, &str); 6] = [
    (Algorithm::PS256, "KAx_r6M6wnA-JYzWxhJ_qRf8Rop1RgQOEh7DMPtKB9RNHtkCtPUoencCqbKG16PvW-0s78T67-oJbiTFBMS-m5-eM4ikFjtGsxxAusI8joRhtCVOR3GDsTOsYFcwU6fLpWgIYim8ZmV4EDIGOE2yF1FbLYYfFZ1QZDtJBWLNxzIoZ5fbA0fZ6AUyQ0v2FdkK1I7Ob96_bb22SSF4IkdL0K0z8qg69iLpIj3bg2c8LwWVHirrnkH-u-_VqAdyE4o53H79cdhKNKzKue7GYcI30rgz9nAHW3DGQqyN9ogoCCdgDpiJ83kFLbcnPDPgtmmNBdt0qfglR8cj5F9M7OGcYw"),
    (Algorithm::PS384, "sOsaKhkPJE-BjAjRaMmebmEihsCxQhUrfknUBSR_TG8a6YkkjKzqTWy-RhiEbU2zS-osl2C2U5RlG9Qp6xepxpWfKOTLwjmpFHhQOete4BE4YWnYewrrbxaWo2XnPKIMVYn8rE2vGgZiYxGf0oLv_wCsQvVxGiuv4o7qRy3Tx5WPc12JDc96bS3DkJSane58qcyEOJxiU9e2BvISZOBf_ej98Cb0gUKckAJ-Y2F92q2Q3ulsxk-MiSr5mfB0UGLcOck0IkR4R2AESefKrUTE7RYml9xeUkFDAfrquRo_LvjnpFgw5z7Mh7RLAsVlsBlt7oTzlQ4tcAz7YQzetkR9_Q"),
    (Algorithm::PS512, "j4u3dZfMCYj0JdOfARi4UxNvCJ0o5qFAD25366hUM3jA3taM2qoazLuULAWufkYjmDo9HW7GYRtGA16pSPmwkdXowrwshfLQKW0hzRg40YnYk3LLC49phi9wtnE1gJ7fvRGDj-BgJRPrgqyCDcIgZOEvEzifsGIstxyCmkzD3sCAivXnhIv6_mKj0NYcTkTUObKfJHkprf2SpQqqYxLgHCc70bdr-xWB_9aKvcHZJ1bbTsi2eoWCqTc-MSU8v6Ljwz-2hW1GSLmjx0Imgyz48H0PnjAYftX7R47Qp4nEnW7REySqmd6l_GMEwqG6n6U4Xs_QgqJeyKcO31m-mthGHA"),
    (Algorithm::RS384, "KlfEi8N8LosKD0zAZxfFV1WsGVuScY2qkPZPTcGmF3RQmtbLPASI9bRXMAWZEVdCWgxjvHD0KzlzTUZB7QmXA1LDsL-pGGCBvHNJvFo6szBLnycYOeH1klgQ--7oBfXjPuw4mcaGlwWDFbrdBmkLIVFA1wVrY_wbXDpEMxo2-T2ujpHLarjLGiKN5YUxbypF_qAzrWWsiXHnQ8SgYJI9kUM_a3W7KLWW-RlURcZXCYyWzLKKAAjFl0c8HVpygJt1VSN5smXlcsNBlgv7MUiPZHl9du4BXOgL1auY19c8I2fn6deZzZEfryWWvPfwnJ-e7swXHaVbdc49430Evxww_w"),
    (Algorithm::RS512, "onCY2EKAM0gtYef19kQPFJmQh1m8kMkAtO6Yvtxsr4jU-mf81VHc1yPY8Qli5tCERaszOEYn4eoW7fT0rnhkW-jFz48XuEpBXyN7iLjCI3KYxa49MfQhIS-3wnXAkXhxRZ9TYOWYsNrHvHtaTj8HEorynp0Yc3FZ-vcY-mAlUn59Q93_RheugfY-DHZuiX2MOUMnf6quyusPqCQe7-H101vXf4fc6t64SJtC_m8yPy6WSMAGgREA8D-r4oliP9DlhnrXqd-6TeD3_RtjMyeunkJ4-MaapKeq63euAOf1SzHwE4Z14ZXo0MUc4bgKW-yn92XsDEI0egnbW6ndVc43mw"),
    (Algorithm::ES256, "_uNhVA2Pgjm80pPzX346L0-4q0xD5ndrEMhWiqygflnnavyb3bFKDFgQXklY9f4Y4swlHMEa1mQNEZx83LImng"),
];

// A 4096-bit key (the largest accepted; 147 limbs, an odd number), signatures by `openssl dgst`.
pub(super) const K4096_N: &str = "qyA3FQFTFBSw32obhteUwERigZ2zJVrhT8F_4oDNEgfKkNk9WmuIskVllelqwA3A6hHovonLU5ndyM4orwlgUAXaKQVOVHBzJKYuN5tVo_vKVa446lprJJkilXc6avy78R3VS3dxACD_qvil-oACs1hEee3RXQa2Psf-mmimQE1Ji5ptJ7VHqAckKv0x14i-fc_f1H5Bki3iSjd2nfIBONwWGsTf5_IH8Qqojd-857gwWqie3ek80-ft_aDlJw74IMEpDZUqEmCJjKiJWRn596CkyBIgC12JfR9iYQRM9U8LdIr40h9GTsn0HEwNac1bWch5BmFe7OzTO3eheCl7TZTGYO-DNcKLSmE-yPO7GRymHudEQWPxjnT1UwU908xCkMuIeVN0SaQR4mqXYgscvTGOzckpbCD7HVAmpy8q4UIq999CU6z0UKOuID1WJA5nuuZv1lrDq87n-9cBmf_LIQsE1lsQyaP5T-gbgsOTimXawMOCAlPfdef08LhB7RyPcGFik-8_hWYjhPmSRVRFOnv0pJ2vlF9xa5gM6qmu4FqNJgLtmVqbkgkujVSvhRoZMbqzC9T2fHhGxr1bDF8BnJxLEz6je0gl8Z2puJeWyPRz2puy7DS6JfgBs0MjfnvdAzWjAck9j-Mad3T5Ef8GvSNIxb-5iROrsPNAXmlfI48";
const K4096_RS256: &str = "jZFO2HOKoANeZnTSKmUcQL2jSXwg7XiZwKEhYyEM72Fcvw0DYvMbVzvUa-wZg0PMUxqqNnZK6D6eLp7fN5kOfxtQ7fgKYGsjZNoXJI8XIzXU0KJYC_1gunIawqCMPcP-cUjrVzaZG0355uI364ViW-d46dOEHMHrdvGjMwfb1lEGkExxewLz8tKwg2O0b4HtmDzIT8jG1HwApXowIup710T58fMfOyjeDjC4-1MMY-ehNQAb-WoKjahNwTZ8HJbPz4YvhJimDcw2nz6TvcYcW3MdOWuNwsL1N8LY9wtPnffGFuz2utukCUKtoOS08AuCgQwjXX4QYAvZwFB-U7yJ7GXuCWxybysKr0XQt-BPgWY2T91oIAtoSuL0dhvY7eE4rDd37COFdN5kP5Rmmk2t9WV09ZTGX7AnSC_b2VO6cKYTQzVvI9ZSUkWNnHW2vXu07NYBZC9nhFq5UOnyUZk5Gp1kl1jaK1Fe28I_Gr04cz1MsL5lscKX1PgrZDKhDaN0MHjiNTv2URU9MpKnNVvFg2CSYQjB6GDJYHP9317YPPsvkxQeZ5BaXvEQuZodd9jedXkezZYNUzdXXl6f9BbhWRz4dwwbNbRbb7o2t2xLBILrP2IOz5bTpUa2rNj6xRGjTgT5KoJgtSyMihQeD9ihHbOsCVmi9mXrgEgq5uFik60";
const K4096_PS256: &str = "f9D1aUhg2pIGIaWpHvJlWLFNECgbqC0iejR7VLoqHgnnm4s0mI-ev1Q40hhH0B00maNkRvteWN2Vtcj9QPI5nLr5eJltCzn97a16RQuKjI910WT6a1D0p1ZpoLzFIMeenpm5Siq1UaU-CBomB5madmmzBMxI8kET7TqN1ady7aKiCMg8R9-PNTmfHrWxC1YrkpV9LVsUAzjZ8TsXp-0XB99TF8er08V1foJR8bqR1DcOiUZGVCQehTVs44_14MyJvdC51NDgTCKGxLVpg2zozfBAkwhZP_OLMtdaKZM2aXd9i8I-VD-ohvHyJImt8bFYDGSWRSSjqkYpWekNNRYlrr44N0kPxFSc_m2sfneYevHWdrnO1ax32TTkHYCTRVB-C1walNn3rouUrbxJtOaG3V5eKgIX2W14nhwKj4XwxoU0xX2Q4mn8dJp4GJ26UCmZWuATkQGjwpreEXsgZbvY3ObSgkpbYXAZxphG4aZYeB32EDNfc8kK3c9NcRmAl1Cf3mppSZ0Fay4kAKWDyJApDQ10izTQBQ_AOKJL0LsVUzhcupXAmymFNyhceFu_sQhFsb4-ZTNBaI-tMNuSzSncLhvn88BDPB6GCaiFFLpSvWRolxgGXeef8kF83xmrGH05q6Wv88mPQRIv52HkRHdc0m3rQ4C5SP8s-4-gmk67r6U";
const K4096_INPUT: &str = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiI0MDk2In0";

fn rsa(n: &str) -> PublicKey {
    PublicKey::rsa(&b64(n), &b64("AQAB")).unwrap()
}

/// Every way of spoiling a valid signature must be refused.
fn assert_spoiled_refused(key: &PublicKey, alg: Algorithm, input: &[u8], sig: &[u8]) {
    assert!(
        key.verify(alg, input, sig),
        "{alg:?} valid signature refused"
    );
    for i in [0, sig.len() / 2, sig.len() - 1] {
        let mut bad = sig.to_vec();
        bad[i] ^= 0x01;
        assert!(!key.verify(alg, input, &bad), "{alg:?} bit flip at {i}");
    }
    assert!(
        !key.verify(alg, input, &sig[..sig.len() - 1]),
        "{alg:?} truncated"
    );
    let mut longer = sig.to_vec();
    longer.push(0);
    assert!(!key.verify(alg, input, &longer), "{alg:?} extended");
    let mut zero_led = vec![0];
    zero_led.extend_from_slice(sig);
    assert!(!key.verify(alg, input, &zero_led), "{alg:?} leading zero");
    assert!(!key.verify(alg, input, &[]), "{alg:?} empty");
    let mut other_input = input.to_vec();
    other_input[0] ^= 0x01;
    assert!(!key.verify(alg, &other_input, sig), "{alg:?} other message");
}

#[test]
fn rfc7515_a2_rs256() {
    let (input, sig) = jws(A2_JWS);
    let key = rsa(A2_N);
    assert_spoiled_refused(&key, Algorithm::RS256, input.as_bytes(), &sig);
    // The same signature under other RSA algorithms, and under another key.
    for alg in [
        Algorithm::RS384,
        Algorithm::PS256,
        Algorithm::ES256,
        Algorithm::HS256,
    ] {
        assert!(!key.verify(alg, input.as_bytes(), &sig), "{alg:?}");
    }
    assert!(!rsa(FIXTURE_N).verify(Algorithm::RS256, input.as_bytes(), &sig));
}

#[test]
fn rsa_signature_not_below_the_modulus_is_refused() {
    let (input, _) = jws(A2_JWS);
    let n = b64(A2_N);
    let key = rsa(A2_N);
    assert!(!key.verify(Algorithm::RS256, input.as_bytes(), &n));
    assert!(!key.verify(Algorithm::RS256, input.as_bytes(), &vec![0xff; n.len()]));
    assert!(!key.verify(Algorithm::PS256, input.as_bytes(), &vec![0; n.len()]));
}

#[test]
fn openssl_signatures_verify() {
    let rsa_key = rsa(FIXTURE_N);
    let ec_key = PublicKey::p256(&b64(FIXTURE_EC_X), &b64(FIXTURE_EC_Y)).unwrap();
    for (alg, sig) in OPENSSL {
        let key = if alg == Algorithm::ES256 {
            &ec_key
        } else {
            &rsa_key
        };
        assert_spoiled_refused(key, alg, OPENSSL_INPUT.as_bytes(), &b64(sig));
    }
    // A PS256 signature is not a PS384 one, nor an RS256 one.
    let (_, ps256) = OPENSSL[0];
    assert!(!rsa_key.verify(Algorithm::PS384, OPENSSL_INPUT.as_bytes(), &b64(ps256)));
    assert!(!rsa_key.verify(Algorithm::RS256, OPENSSL_INPUT.as_bytes(), &b64(ps256)));
}

#[test]
fn rfc7515_a3_es256() {
    let (input, sig) = jws(A3_JWS);
    let key = PublicKey::p256(&b64(A3_X), &b64(A3_Y)).unwrap();
    assert_spoiled_refused(&key, Algorithm::ES256, input.as_bytes(), &sig);
    let other = PublicKey::p256(&b64(FIXTURE_EC_X), &b64(FIXTURE_EC_Y)).unwrap();
    assert!(!other.verify(Algorithm::ES256, input.as_bytes(), &sig));
    assert!(!key.verify(Algorithm::ES384, input.as_bytes(), &sig));
}

#[test]
fn es256_out_of_range_scalars_are_refused() {
    let (input, sig) = jws(A3_JWS);
    let key = PublicKey::p256(&b64(A3_X), &b64(A3_Y)).unwrap();
    let n = hex32("ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551");
    let (r, s) = sig.split_at(32);
    let cases = [
        [&[0u8; 32][..], s].concat(),
        [r, &[0u8; 32][..]].concat(),
        [&n[..], s].concat(),
        [r, &n[..]].concat(),
        [&[0xffu8; 32][..], s].concat(),
    ];
    for bad in cases {
        assert!(!key.verify(Algorithm::ES256, input.as_bytes(), &bad));
    }
    // ECDSA itself accepts (r, n - s) as well, as the RustCrypto verifier does.
    let neg_s = sub_be(&n, s);
    let malleable = [r, &neg_s[..]].concat();
    assert!(key.verify(Algorithm::ES256, input.as_bytes(), &malleable));
}

#[test]
fn invalid_keys_are_refused_at_load() {
    // P-256: y off the curve, coordinates of the wrong length or not below p.
    let mut y = b64(A3_Y);
    y[31] ^= 1;
    assert!(PublicKey::p256(&b64(A3_X), &y).is_err());
    assert!(PublicKey::p256(&b64(A3_X)[1..], &b64(A3_Y)).is_err());
    assert!(PublicKey::p256(&[0xff; 32], &b64(A3_Y)).is_err());
    assert!(PublicKey::p384(&b64(A3_X), &b64(A3_Y)).is_err());
    // Ed25519: wrong length.
    assert!(PublicKey::ed25519(&b64(ED_X)[1..]).is_err());
    // RSA: even modulus, exponents 1 and even, a modulus above 4096 bits.
    let mut even = b64(A2_N);
    *even.last_mut().unwrap() &= 0xfe;
    assert!(PublicKey::rsa(&even, &b64("AQAB")).is_err());
    assert!(PublicKey::rsa(&b64(A2_N), &[1]).is_err());
    assert!(PublicKey::rsa(&b64(A2_N), &[1, 0, 0]).is_err());
    assert!(PublicKey::rsa(&vec![0xc5; 513], &b64("AQAB")).is_err());
    assert!(PublicKey::rsa(&vec![0xc5; 512], &b64("AQAB")).is_ok());
}

#[test]
fn rfc8037_a4_ed25519() {
    let (input, sig) = jws(ED_JWS);
    let key = PublicKey::ed25519(&b64(ED_X)).unwrap();
    assert_spoiled_refused(&key, Algorithm::EdDSA, input.as_bytes(), &sig);
    // S + L (the group order) is the same scalar, but not canonical: refused (RFC 8032 5.1.7).
    let l = hex32("1000000000000000000000000000000014def9dea2f79cd65812631a5cf5d3ed");
    let mut s_le: Vec<u8> = sig[32..].to_vec();
    let mut l_le = l.to_vec();
    l_le.reverse();
    let mut carry = 0u16;
    for (a, b) in s_le.iter_mut().zip(&l_le) {
        let v = u16::from(*a) + u16::from(*b) + carry;
        *a = v as u8;
        carry = v >> 8;
    }
    let bad = [&sig[..32], &s_le[..]].concat();
    assert!(!key.verify(Algorithm::EdDSA, input.as_bytes(), &bad));
}

/// Every encoding of a small-order Ed25519 point: the y of the identity (1), of the order-2
/// point (p - 1), of the order-4 points (0) and of the order-8 points (two values), each with
/// both sign bits, and the non-canonical spellings y + p where they fit in 255 bits (0 + p and
/// 1 + p; libsodium's blocklist). Each must be refused at load, whether or not it decompresses.
pub(crate) fn small_order_encodings() -> Vec<[u8; 32]> {
    let mut p_minus_1 = [0xff; 32];
    p_minus_1[0] = 0xec;
    p_minus_1[31] = 0x7f;
    let mut p = p_minus_1;
    p[0] = 0xed;
    let mut p_plus_1 = p_minus_1;
    p_plus_1[0] = 0xee;
    let mut one = [0; 32];
    one[0] = 1;
    let ys = [
        one,
        [0; 32],
        p_minus_1,
        p,
        p_plus_1,
        hex32("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05"),
        hex32("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a"),
    ];
    let mut all = Vec::new();
    for y in ys {
        all.push(y);
        let mut signed = y;
        signed[31] |= 0x80;
        all.push(signed);
    }
    all
}

/// Class 9 of issue #19: a small-order key makes (R = identity, S = 0) a signature of every
/// message. Such keys never load, nor do non-canonical encodings or keys with a torsion part.
#[test]
fn small_order_and_non_canonical_ed25519_keys_are_refused_at_load() {
    use curve25519_dalek::constants::ED25519_BASEPOINT_POINT;
    use curve25519_dalek::edwards::CompressedEdwardsY;
    use curve25519_dalek::scalar::Scalar;
    let mut decompressing = 0;
    for encoding in small_order_encodings() {
        if let Some(point) = CompressedEdwardsY(encoding).decompress() {
            assert!(point.is_small_order(), "{encoding:02x?}");
            decompressing += 1;
        }
        assert!(
            PublicKey::ed25519(&encoding).is_err(),
            "small-order key {encoding:02x?} loaded"
        );
    }
    // All 8 torsion points and 4 non-canonical spellings decompress: the check is not vacuous.
    assert!(decompressing >= 12, "{decompressing}");
    // A real key loads; the same key plus an order-8 point (mixed order) does not.
    let a = ED25519_BASEPOINT_POINT * Scalar::from(0x1234_5678_9abc_u64);
    let t = CompressedEdwardsY(hex32(
        "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
    ))
    .decompress()
    .unwrap();
    assert!(PublicKey::ed25519(a.compress().as_bytes()).is_ok());
    let mixed = (a + t).compress();
    assert!(PublicKey::ed25519(mixed.as_bytes()).is_err());
    // The RFC 8037 key still loads and verifies (see rfc8037_a4_ed25519).
    assert!(PublicKey::ed25519(&b64(ED_X)).is_ok());
    // What the check prevents: with the identity accepted, (R = identity, S = 0) would verify.
    let mut forged = [0u8; 64];
    forged[0] = 1;
    let identity = small_order_encodings()[0];
    assert!(CompressedEdwardsY(identity).decompress().is_some());
    assert!(PublicKey::ed25519(&identity).is_err());
    let key = PublicKey::ed25519(&b64(ED_X)).unwrap();
    assert!(!key.verify(Algorithm::EdDSA, b"any message", &forged));
}

#[test]
fn rfc7515_a1_hs256() {
    let (input, sig) = jws(A1_JWS);
    let key = PublicKey::hmac(&b64(A1_K));
    assert_spoiled_refused(&key, Algorithm::HS256, input.as_bytes(), &sig);
    assert!(!key.verify(Algorithm::HS384, input.as_bytes(), &sig));
}

fn hex32(hex: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap();
    }
    out
}

/// a - b, big-endian, a >= b.
fn sub_be(a: &[u8], b: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; a.len()];
    let mut borrow = 0i16;
    for i in (0..a.len()).rev() {
        let mut v = i16::from(a[i]) - i16::from(b[i]) - borrow;
        borrow = 0;
        if v < 0 {
            v += 256;
            borrow = 1;
        }
        out[i] = v as u8;
    }
    out
}

/// Random messages signed by jsonwebtoken's RustCrypto backend with the test fixtures: this
/// backend must accept each, refuse each spoiled one, and agree with RustCrypto's verifier.
#[cfg(not(target_arch = "wasm32"))]
#[test]
fn agrees_with_rustcrypto_on_random_messages() {
    use jsonwebtoken::{DecodingKey, EncodingKey};
    let read = |f: &str| {
        std::fs::read(format!(
            "{}/testkit/fixtures/{f}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    };
    let rsa_enc = EncodingKey::from_rsa_pem(&read("rsa-a.pem")).unwrap();
    let ec_enc = EncodingKey::from_ec_pem(&read("ec256.pem")).unwrap();
    let ed_enc = EncodingKey::from_ed_pem(&read("ed25519.pem")).unwrap();
    let jwks: serde_json::Value = serde_json::from_slice(&read("jwks.json")).unwrap();
    let k = |i: usize, f: &str| b64(jwks["keys"][i][f].as_str().unwrap());
    let rsa_key = PublicKey::rsa(&k(0, "n"), &k(0, "e")).unwrap();
    let ec_key = PublicKey::p256(&k(1, "x"), &k(1, "y")).unwrap();
    let ed_key = PublicKey::ed25519(&k(2, "x")).unwrap();
    let rsa_dec = DecodingKey::from_rsa_raw_components(&k(0, "n"), &k(0, "e"));
    let ec_dec = DecodingKey::from_ec_components(
        jwks["keys"][1]["x"].as_str().unwrap(),
        jwks["keys"][1]["y"].as_str().unwrap(),
    )
    .unwrap();
    let ed_dec = DecodingKey::from_ed_der(&k(2, "x"));
    let cases: [(Algorithm, &EncodingKey, &PublicKey, &DecodingKey, usize); 4] = [
        (Algorithm::RS256, &rsa_enc, &rsa_key, &rsa_dec, 8),
        (Algorithm::PS256, &rsa_enc, &rsa_key, &rsa_dec, 8),
        (Algorithm::ES256, &ec_enc, &ec_key, &ec_dec, 200),
        (Algorithm::EdDSA, &ed_enc, &ed_key, &ed_dec, 50),
    ];
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for (alg, enc, ours, theirs, rounds) in cases {
        for round in 0..rounds {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let message = format!("header.{seed:x}-{round}");
            let sig_b64 = jsonwebtoken::crypto::sign(message.as_bytes(), enc, alg).unwrap();
            let sig = b64(&sig_b64);
            assert!(
                ours.verify(alg, message.as_bytes(), &sig),
                "{alg:?} {message}"
            );
            let mut bad = sig.clone();
            bad[(seed as usize) % sig.len()] ^= 1 << (seed % 8);
            let bad_b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&bad);
            let reference = jsonwebtoken::crypto::verify(&bad_b64, message.as_bytes(), theirs, alg)
                .unwrap_or(false);
            assert_eq!(
                ours.verify(alg, message.as_bytes(), &bad),
                reference,
                "{alg:?} {message}"
            );
            assert!(!reference);
        }
    }
}

fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

/// Wycheproof's vectors for RS256 and PS256 with 2048-bit keys (testdata/, reduced from
/// C2SP/wycheproof testvectors_v1): padding and DigestInfo variants, signatures of the wrong
/// length or not below n, PSS salt and trailer edge cases. Every "valid" signature must verify
/// and every "invalid" one be refused; "acceptable" (a legacy encoding) may go either way.
#[test]
fn wycheproof_rsa_vectors() {
    let files = [
        (
            include_str!("testdata/wycheproof_rsa_pkcs1_2048_sha256.json"),
            Algorithm::RS256,
        ),
        (
            include_str!("testdata/wycheproof_rsa_pss_2048_sha256_mgf1_32.json"),
            Algorithm::PS256,
        ),
    ];
    for (file, alg) in files {
        let doc: serde_json::Value = serde_json::from_str(file).unwrap();
        let mut counts = [0usize; 2];
        for group in doc["groups"].as_array().unwrap() {
            let n = hex(group["n"].as_str().unwrap());
            let e = hex(group["e"].as_str().unwrap());
            let key = PublicKey::rsa(&n, &e).unwrap();
            for test in group["tests"].as_array().unwrap() {
                let id = &test[0];
                let message = hex(test[1].as_str().unwrap());
                let signature = hex(test[2].as_str().unwrap());
                let verified = key.verify(alg, &message, &signature);
                match test[3].as_str().unwrap() {
                    "valid" => assert!(verified, "{alg:?} test {id}: valid signature refused"),
                    "invalid" => {
                        assert!(!verified, "{alg:?} test {id}: invalid signature accepted")
                    }
                    _ => {}
                }
                counts[usize::from(verified)] += 1;
            }
        }
        // Both outcomes occur: the file was read, not skipped.
        assert!(counts[0] > 40 && counts[1] > 8, "{alg:?}: {counts:?}");
    }
}

/// The largest modulus: the most rows between carries and an odd number of limbs (the
/// reduction's single last row).
#[test]
fn rsa_4096_signatures_verify() {
    let key = rsa(K4096_N);
    for (alg, sig) in [
        (Algorithm::RS256, K4096_RS256),
        (Algorithm::PS256, K4096_PS256),
    ] {
        assert_spoiled_refused(&key, alg, K4096_INPUT.as_bytes(), &b64(sig));
    }
}
