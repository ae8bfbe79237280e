//! Signed, expiring content URLs:
//! `{base}/content/{id}?op=read|write&expires={unix seconds}&sig={hex hmac-sha256}`
//! with the MAC over `"{id}\n{op}\n{expires}"`. Whoever holds the URL may do
//! exactly that one operation on exactly that dataset until it expires.

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// What a signed URL allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// `GET` the content.
    Read,
    /// `PUT` new content.
    Write,
}

impl Op {
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Read => "read",
            Op::Write => "write",
        }
    }

    fn parse(s: &str) -> Option<Op> {
        match s {
            "read" => Some(Op::Read),
            "write" => Some(Op::Write),
            _ => None,
        }
    }
}

/// Why a signed URL was refused (each becomes a 403 with this text).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("this URL is not a signed content URL: `{0}` is missing or malformed; ask the dataset service for a new one (readDatasetUrl / createDatasetUploadUrl)")]
    Malformed(&'static str),
    #[error("the signature of this URL does not match: it was changed or was not issued by this service; ask for a new one")]
    BadSignature,
    #[error("this URL expired at {expires} (unix seconds, now {now}); ask for a new one")]
    Expired { expires: i64, now: i64 },
    #[error("this URL was signed for {signed} but used for {used}: use GET with a readDatasetUrl URL and PUT with a createDatasetUploadUrl URL")]
    WrongOp {
        signed: &'static str,
        used: &'static str,
    },
}

/// The query parameters of a content request, as received.
#[derive(Debug, Default, serde::Deserialize)]
pub struct SignedParams {
    pub op: Option<String>,
    pub expires: Option<String>,
    pub sig: Option<String>,
}

/// Signs and verifies content URLs with one secret.
#[derive(Clone)]
pub struct UrlSigner {
    secret: Vec<u8>,
    base_url: String,
}

impl UrlSigner {
    /// `base_url` is what URLs start with, e.g. `http://127.0.0.1:4002` (a trailing `/` is dropped).
    pub fn new(secret: &str, base_url: &str) -> UrlSigner {
        UrlSigner {
            secret: secret.as_bytes().to_vec(),
            base_url: base_url.trim_end_matches('/').to_string(),
        }
    }

    fn mac(&self, id: &str, op: Op, expires: i64) -> HmacSha256 {
        // HMAC accepts keys of any length, so this cannot fail.
        let mut mac = HmacSha256::new_from_slice(&self.secret)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(format!("{id}\n{}\n{expires}", op.as_str()).as_bytes());
        mac
    }

    /// The hex signature of `(id, op, expires)`.
    pub fn signature(&self, id: &str, op: Op, expires: i64) -> String {
        hex::encode(self.mac(id, op, expires).finalize().into_bytes())
    }

    /// The full URL allowing `op` on dataset `id` until `expires` (unix seconds).
    pub fn url(&self, id: &str, op: Op, expires: i64) -> String {
        format!(
            "{}/content/{id}?op={}&expires={expires}&sig={}",
            self.base_url,
            op.as_str(),
            self.signature(id, op, expires)
        )
    }

    /// Checks a request for `id` done as `used` at unix time `now`. The
    /// signature is checked before anything else (in constant time), so a
    /// refusal says nothing about the dataset to someone without a valid URL.
    pub fn verify(
        &self,
        id: &str,
        params: &SignedParams,
        used: Op,
        now: i64,
    ) -> Result<(), Refusal> {
        let op_text = params.op.as_deref().ok_or(Refusal::Malformed("op"))?;
        let expires_text = params
            .expires
            .as_deref()
            .ok_or(Refusal::Malformed("expires"))?;
        let sig_text = params.sig.as_deref().ok_or(Refusal::Malformed("sig"))?;
        let sig = hex::decode(sig_text).map_err(|_| Refusal::Malformed("sig"))?;
        // An op or expiry we cannot parse was not signed by us: same answer as a bad MAC.
        let op = Op::parse(op_text).ok_or(Refusal::BadSignature)?;
        let expires: i64 = expires_text.parse().map_err(|_| Refusal::BadSignature)?;
        if expires.to_string() != expires_text {
            return Err(Refusal::BadSignature);
        }
        self.mac(id, op, expires)
            .verify_slice(&sig)
            .map_err(|_| Refusal::BadSignature)?;
        if op != used {
            return Err(Refusal::WrongOp {
                signed: op.as_str(),
                used: used.as_str(),
            });
        }
        if now > expires {
            return Err(Refusal::Expired { expires, now });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0b4c3a6e-8d1e-4a43-9d1c-7f6b0f2b9d11";

    fn params_of(url: &str) -> SignedParams {
        let query = url.split_once('?').unwrap().1;
        let mut p = SignedParams::default();
        for pair in query.split('&') {
            let (k, v) = pair.split_once('=').unwrap();
            match k {
                "op" => p.op = Some(v.into()),
                "expires" => p.expires = Some(v.into()),
                "sig" => p.sig = Some(v.into()),
                _ => panic!("unexpected parameter {k}"),
            }
        }
        p
    }

    #[test]
    fn url_shape_and_known_signature() {
        let signer = UrlSigner::new("secret", "http://h:1/");
        let url = signer.url(ID, Op::Read, 1_000);
        let expected_sig = {
            let mut mac = HmacSha256::new_from_slice(b"secret").unwrap();
            mac.update(format!("{ID}\nread\n1000").as_bytes());
            hex::encode(mac.finalize().into_bytes())
        };
        assert_eq!(
            url,
            format!("http://h:1/content/{ID}?op=read&expires=1000&sig={expected_sig}")
        );
    }

    #[test]
    fn accepts_own_urls_until_expiry() {
        let signer = UrlSigner::new("secret", "http://h");
        let url = signer.url(ID, Op::Write, 1_000);
        let p = params_of(&url);
        assert_eq!(signer.verify(ID, &p, Op::Write, 999), Ok(()));
        assert_eq!(signer.verify(ID, &p, Op::Write, 1_000), Ok(()));
        assert_eq!(
            signer.verify(ID, &p, Op::Write, 1_001),
            Err(Refusal::Expired {
                expires: 1_000,
                now: 1_001
            })
        );
    }

    #[test]
    fn refuses_tampering_wrong_op_and_other_secrets() {
        let signer = UrlSigner::new("secret", "http://h");
        let p = params_of(&signer.url(ID, Op::Read, 1_000));
        assert_eq!(
            signer.verify(ID, &p, Op::Write, 0),
            Err(Refusal::WrongOp {
                signed: "read",
                used: "write"
            })
        );
        let other_id = "1b4c3a6e-8d1e-4a43-9d1c-7f6b0f2b9d11";
        assert_eq!(
            signer.verify(other_id, &p, Op::Read, 0),
            Err(Refusal::BadSignature)
        );
        let later = SignedParams {
            expires: Some("2000".into()),
            ..params_of(&signer.url(ID, Op::Read, 1_000))
        };
        assert_eq!(
            signer.verify(ID, &later, Op::Read, 0),
            Err(Refusal::BadSignature)
        );
        let padded = SignedParams {
            expires: Some("01000".into()),
            ..params_of(&signer.url(ID, Op::Read, 1_000))
        };
        assert_eq!(
            signer.verify(ID, &padded, Op::Read, 0),
            Err(Refusal::BadSignature)
        );
        let upgraded = SignedParams {
            op: Some("write".into()),
            ..params_of(&signer.url(ID, Op::Read, 1_000))
        };
        assert_eq!(
            signer.verify(ID, &upgraded, Op::Write, 0),
            Err(Refusal::BadSignature)
        );
        let other = UrlSigner::new("other", "http://h");
        assert_eq!(
            other.verify(ID, &p, Op::Read, 0),
            Err(Refusal::BadSignature)
        );
        let mut flipped = params_of(&signer.url(ID, Op::Read, 1_000));
        let mut sig = flipped.sig.take().unwrap();
        let last = if sig.ends_with('0') { "1" } else { "0" };
        sig.replace_range(sig.len() - 1.., last);
        flipped.sig = Some(sig);
        assert_eq!(
            signer.verify(ID, &flipped, Op::Read, 0),
            Err(Refusal::BadSignature)
        );
    }

    #[test]
    fn refuses_missing_or_malformed_parameters() {
        let signer = UrlSigner::new("secret", "http://h");
        let full = || params_of(&signer.url(ID, Op::Read, 1_000));
        assert_eq!(
            signer.verify(
                ID,
                &SignedParams {
                    sig: None,
                    ..full()
                },
                Op::Read,
                0
            ),
            Err(Refusal::Malformed("sig"))
        );
        assert_eq!(
            signer.verify(
                ID,
                &SignedParams {
                    sig: Some("zz".into()),
                    ..full()
                },
                Op::Read,
                0
            ),
            Err(Refusal::Malformed("sig"))
        );
        assert_eq!(
            signer.verify(ID, &SignedParams { op: None, ..full() }, Op::Read, 0),
            Err(Refusal::Malformed("op"))
        );
        assert_eq!(
            signer.verify(
                ID,
                &SignedParams {
                    expires: None,
                    ..full()
                },
                Op::Read,
                0
            ),
            Err(Refusal::Malformed("expires"))
        );
        assert_eq!(
            signer.verify(
                ID,
                &SignedParams {
                    op: Some("delete".into()),
                    ..full()
                },
                Op::Read,
                0
            ),
            Err(Refusal::BadSignature)
        );
    }
}
