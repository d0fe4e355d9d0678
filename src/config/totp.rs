//! One-time codes for accounts with a second factor: `${totp:env:NAME}` in a template renders the
//! RFC 6238 code for now from the seed kept in that secret.
//!
//! The secret holds either the base32 seed an authenticator app is given (spaces, lowercase and
//! `=` padding are accepted) or the whole `otpauth://totp/...?secret=...` URI from the QR code,
//! whose `digits`, `period` and `algorithm` are then used. Options after the reference override
//! them: `${totp:env:SEED;digits=8;period=60;algorithm=sha256}`. Defaults are those of RFC 6238
//! and every authenticator app: 6 digits, 30 s, HMAC-SHA-1.
//!
//! The seed is parsed when the configuration loads, so a bad seed is a load error that names
//! the secret's source (never its value).

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use hmac::{Hmac, KeyInit, Mac};

/// The HMAC of the code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// HMAC-SHA-1 (the default).
    Sha1,
    /// HMAC-SHA-256.
    Sha256,
    /// HMAC-SHA-512.
    Sha512,
}

/// A seed and how codes are made from it.
#[derive(Clone, PartialEq, Eq)]
pub struct Totp {
    key: Vec<u8>,
    /// Digits per code, 6 to 10.
    pub digits: u32,
    /// Seconds per time step.
    pub period: u64,
    /// The HMAC.
    pub algorithm: Algorithm,
}

impl fmt::Debug for Totp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Totp")
            .field("key", &"<redacted>")
            .field("digits", &self.digits)
            .field("period", &self.period)
            .field("algorithm", &self.algorithm)
            .finish()
    }
}

impl Totp {
    /// From a raw key (RFC 6238's test vectors are given this way).
    pub fn from_key(key: Vec<u8>, digits: u32, period: u64, algorithm: Algorithm) -> Totp {
        Totp {
            key,
            digits,
            period,
            algorithm,
        }
    }

    /// From a secret's value (base32 seed or `otpauth://` URI) and `;key=value` options.
    /// Errors describe the problem without quoting the value.
    pub fn parse(value: &str, options: &str) -> Result<Totp, String> {
        let value = value.trim();
        let mut totp = if value.starts_with("otpauth://") {
            from_uri(value)?
        } else {
            Totp {
                key: decode_base32(value)?,
                digits: 6,
                period: 30,
                algorithm: Algorithm::Sha1,
            }
        };
        for opt in options.split(';').map(str::trim).filter(|o| !o.is_empty()) {
            let (k, v) = opt
                .split_once('=')
                .ok_or_else(|| format!("TOTP option {opt:?}: write key=value"))?;
            totp.set(k.trim(), v.trim())?;
        }
        Ok(totp)
    }

    fn set(&mut self, key: &str, value: &str) -> Result<(), String> {
        match key {
            "digits" => match value.parse::<u32>() {
                Ok(d @ 6..=10) => self.digits = d,
                _ => return Err(format!("TOTP digits {value:?}: use 6 to 10")),
            },
            "period" => match value.parse::<u64>() {
                Ok(p @ 1..=3600) => self.period = p,
                _ => return Err(format!("TOTP period {value:?}: use 1 to 3600 seconds")),
            },
            "algorithm" => {
                self.algorithm = match value.to_ascii_lowercase().as_str() {
                    "sha1" => Algorithm::Sha1,
                    "sha256" => Algorithm::Sha256,
                    "sha512" => Algorithm::Sha512,
                    _ => {
                        return Err(format!(
                            "TOTP algorithm {value:?}: use sha1, sha256 or sha512"
                        ))
                    }
                }
            }
            other => {
                return Err(format!(
                    "unknown TOTP option {other:?} (digits, period, algorithm)"
                ))
            }
        }
        Ok(())
    }

    /// The code for a Unix time in seconds.
    pub fn code_at(&self, unix_secs: u64) -> String {
        let counter = (unix_secs / self.period).to_be_bytes();
        // HMAC takes keys of any length, so `new_from_slice` cannot fail here.
        macro_rules! mac {
            ($d:ty) => {
                <Hmac<$d> as KeyInit>::new_from_slice(&self.key)
                    .map(|mut m| {
                        m.update(&counter);
                        m.finalize().into_bytes().to_vec()
                    })
                    .unwrap_or_default()
            };
        }
        let mac = match self.algorithm {
            Algorithm::Sha1 => mac!(sha1::Sha1),
            Algorithm::Sha256 => mac!(sha2::Sha256),
            Algorithm::Sha512 => mac!(sha2::Sha512),
        };
        // RFC 4226 dynamic truncation. The MAC is 20 bytes or more, so every index is in range.
        let offset = usize::from(mac.last().copied().unwrap_or(0) & 0x0f);
        let bin = mac
            .get(offset..offset + 4)
            .map(|b| u32::from_be_bytes([b[0] & 0x7f, b[1], b[2], b[3]]))
            .unwrap_or(0);
        let modulus = 10u64.pow(self.digits);
        format!(
            "{:0width$}",
            u64::from(bin) % modulus,
            width = self.digits as usize
        )
    }

    /// The code for now.
    pub fn now(&self) -> String {
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.code_at(secs)
    }
}

fn decode_base32(s: &str) -> Result<Vec<u8>, String> {
    let cleaned: String = s
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-' && *c != '=')
        .map(|c| c.to_ascii_uppercase())
        .collect();
    if cleaned.is_empty() {
        return Err("the TOTP seed is empty".into());
    }
    data_encoding::BASE32_NOPAD
        .decode(cleaned.as_bytes())
        .map_err(|_| {
            "the TOTP seed is not valid base32 (letters A-Z and digits 2-7), nor an otpauth:// URI"
                .to_string()
        })
}

fn from_uri(uri: &str) -> Result<Totp, String> {
    let url = url::Url::parse(uri).map_err(|_| "the otpauth:// URI does not parse".to_string())?;
    if url.host_str() != Some("totp") {
        return Err("the otpauth:// URI is not for TOTP (otpauth://totp/...)".into());
    }
    let mut secret = None;
    let mut options = Vec::new();
    for (k, v) in url.query_pairs() {
        match k.as_ref() {
            "secret" => secret = Some(v.into_owned()),
            "digits" | "period" | "algorithm" => options.push((k.into_owned(), v.into_owned())),
            _ => {}
        }
    }
    let secret = secret.ok_or("the otpauth:// URI has no secret parameter")?;
    let mut totp = Totp {
        key: decode_base32(&secret)?,
        digits: 6,
        period: 30,
        algorithm: Algorithm::Sha1,
    };
    for (k, v) in options {
        totp.set(&k, &v)?;
    }
    Ok(totp)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 appendix B: the seeds are ASCII "1234567890" repeated to the hash's length.
    #[test]
    fn rfc6238_test_vectors() {
        let sha1 = b"12345678901234567890".to_vec();
        let sha256 = b"12345678901234567890123456789012".to_vec();
        let sha512 = b"1234567890123456789012345678901234567890123456789012345678901234".to_vec();
        let cases: [(u64, &str, &str, &str); 6] = [
            (59, "94287082", "46119246", "90693936"),
            (1111111109, "07081804", "68084774", "25091201"),
            (1111111111, "14050471", "67062674", "99943326"),
            (1234567890, "89005924", "91819424", "93441116"),
            (2000000000, "69279037", "90698825", "38618901"),
            (20000000000, "65353130", "77737706", "47863826"),
        ];
        for (t, c1, c256, c512) in cases {
            let code = |key: &[u8], alg| Totp::from_key(key.to_vec(), 8, 30, alg).code_at(t);
            assert_eq!(code(&sha1, Algorithm::Sha1), c1, "sha1 at {t}");
            assert_eq!(code(&sha256, Algorithm::Sha256), c256, "sha256 at {t}");
            assert_eq!(code(&sha512, Algorithm::Sha512), c512, "sha512 at {t}");
        }
    }

    #[test]
    fn six_digits_by_default_from_a_base32_seed() {
        // "12345678901234567890" in base32, written as apps show it.
        let t = Totp::parse("gezd gnbv gy3t qojq gezd gnbv gy3t qojq", "").unwrap();
        assert_eq!((t.digits, t.period, t.algorithm), (6, 30, Algorithm::Sha1));
        assert_eq!(t.code_at(59), "287082");
        assert_eq!(t.code_at(1111111109), "081804");
    }

    #[test]
    fn otpauth_uri_and_options() {
        let t = Totp::parse(
            "otpauth://totp/Shop:probe@example.com?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=Shop&digits=8&period=60",
            "",
        )
        .unwrap();
        assert_eq!((t.digits, t.period), (8, 60));
        assert_eq!(t.code_at(119), "94287082");
        let t = Totp::parse(
            "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ",
            "digits=8; algorithm=SHA1",
        )
        .unwrap();
        assert_eq!(t.code_at(59), "94287082");
    }

    #[test]
    fn bad_seeds_never_echo_the_value() {
        for (value, opts) in [
            ("not*base32!", ""),
            ("", ""),
            ("GEZDGNBV", "digits=4"),
            ("GEZDGNBV", "colour=blue"),
            ("otpauth://hotp/x?secret=GEZDGNBV", ""),
            ("otpauth://totp/x?issuer=y", ""),
        ] {
            let e = Totp::parse(value, opts).unwrap_err();
            if !value.is_empty() {
                assert!(!e.contains(value), "{e}");
            }
        }
        let t = Totp::parse("GEZDGNBVGY3TQOJQ", "").unwrap();
        assert!(!format!("{t:?}").contains("GEZD"));
    }
}
